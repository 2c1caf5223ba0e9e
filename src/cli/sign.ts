import { createReadStream, type Stats, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { FileError, MpotaError, UsageError } from "../errors.ts";
import { checkBlockSize, DEFAULT_BLOCK_SIZE, withSeq } from "../protocol/datagram.ts";
import { endPackets, signImageStream } from "../protocol/image-packets.ts";
import { OtaFileEncoder } from "../protocol/ota-file.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import { checkImageSize, MAX_IMAGE_FILE_SIZE } from "../transfer/image-size.ts";
import { isOtaFile } from "../transfer/sources.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey, parseIntegerOption } from "./key-options.ts";
import { unusualKeyWarning } from "./keys.ts";
import { addPreflightOptions, type PreflightCliOptions, preflightFile } from "./preflight-check.ts";
import { checkOutputFree, withAtomicFile } from "./write-file.ts";

/** What the preflight check gets to look at. `size` is undefined for pipes, whose size is not known up front. */
export interface FirmwareToSign {
  path: string;
  size: number | undefined;
}

/** Checks an image's contents before it is signed (throws to refuse). */
export type SignPreflight = (firmware: FirmwareToSign, io: CliIo) => Promise<void> | void;

interface SignOptions extends PreflightCliOptions {
  key: string;
  block: number;
  output?: string;
  force?: boolean;
}

export interface SignResult {
  output: string;
  imageSize: number;
  dataPackets: number;
  datagrams: number;
  largestDatagram: number;
  fileSize: number;
  sha1: string;
}

function statFirmware(path: string): Stats {
  try {
    const stats = statSync(path);
    if (stats.isDirectory()) throw new FileError(`Firmware ${path} is a directory; give the firmware file.`);
    return stats;
  } catch (error) {
    if (error instanceof MpotaError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new FileError(`Firmware file ${path} does not exist. Check the path.`);
    throw new FileError(`Firmware file ${path} cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

async function* readFirmware(path: string): AsyncGenerator<Uint8Array> {
  let total = 0;
  const stream = createReadStream(path, { highWaterMark: 64 * 1024 });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      // Pipes have no size up front; stop as soon as they grow too large.
      if (total > MAX_IMAGE_FILE_SIZE) checkImageSize(total, path, true);
      yield chunk;
    }
  } catch (error) {
    if (error instanceof MpotaError) throw error;
    throw new FileError(`Firmware file ${path} cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  checkImageSize(total, path);
}

/** Streams the firmware through the signer into a canned .ota file that appears only when complete. */
export async function signFirmwareFile(
  firmware: string,
  output: string,
  key: SigningKey,
  block: number,
  force: boolean,
): Promise<SignResult> {
  return withAtomicFile(output, { force, what: "Output file" }, async (file) => {
    const encoder = new OtaFileEncoder();
    await file.write(encoder.header());
    let seq = 1;
    let imageSize = 0;
    let dataPackets = 0;
    let largestDatagram = 0;
    const add = async (datagram: Uint8Array) => {
      largestDatagram = Math.max(largestDatagram, datagram.length);
      await file.write(encoder.record(datagram));
    };
    for await (const packet of signImageStream(readFirmware(firmware), key, block)) {
      imageSize += packet.length;
      dataPackets++;
      await add(withSeq(seq++, packet));
    }
    for (const packet of endPackets(key)) await add(withSeq(seq++, packet));
    const trailer = encoder.finish();
    await file.write(trailer);
    return {
      output,
      imageSize,
      dataPackets,
      datagrams: seq - 1,
      largestDatagram,
      fileSize: file.size,
      sha1: Buffer.from(trailer.subarray(2)).toString("hex"),
    };
  });
}

async function sign(
  io: CliIo,
  firmwareArg: string,
  options: SignOptions,
  preflight: SignPreflight | undefined,
): Promise<void> {
  const firmware = resolve(firmwareArg);
  const output = resolve(options.output ?? `${firmwareArg}.ota`);
  if (output === firmware) {
    throw new UsageError(
      `The output would replace the firmware ${firmware} itself. Choose another name with -o.`,
    );
  }
  const stats = statFirmware(firmware);
  const size = stats.isFile() ? stats.size : undefined;
  if (size !== undefined && (await isOtaFile(firmware).catch(() => false))) {
    throw new UsageError(
      `${firmwareArg} is already signed: it is a canned .ota update (made by \`mpota sign\` or ota_client.py sign). Push it as it is: \`mpota push ${firmwareArg} --to <device address>\`. To sign with another key or block size, sign the firmware image it was made from (firmware-ota.bin).`,
    );
  }
  if (size !== undefined) checkImageSize(size, firmware);
  const key = loadSigningKey(resolve(options.key));
  const keyWarning = unusualKeyWarning(key.bits, options.block);
  if (keyWarning !== undefined) io.err(`warning: ${keyWarning}\n`);
  const force = options.force === true;
  checkOutputFree(output, { force, what: "Output file" });

  if (preflight) await preflight({ path: firmware, size }, io);
  else if (size === undefined) io.err("firmware checks skipped: the input is not a regular file\n");
  else await preflightFile(firmware, options, io);

  const r = await signFirmwareFile(firmware, output, key, options.block, force);
  io.out(`Signed ${firmware} with a ${key.bits}-bit key:
  image      ${r.imageSize} bytes
  block      ${options.block} bytes (datagrams of up to ${r.largestDatagram} bytes)
  datagrams  ${r.datagrams} (${r.dataPackets} with firmware data, ${r.datagrams - r.dataPackets} end packets)
  output     ${r.output} (${r.fileSize} bytes)
  sha1       ${r.sha1} (the checksum at the end of the .ota file)
`);
}

function parseBlock(value: string): number {
  return checkBlockSize(parseIntegerOption("--block")(value));
}

/**
 * `mpota sign`. `preflight`, when given, checks the image's contents after
 * the cheap checks (size, key) and before anything is written.
 */
export function registerSignCommand(program: Command, io: CliIo, preflight?: SignPreflight): void {
  const command = program
    .command("sign")
    .description("Sign a firmware image into a canned .ota file (byte-identical to `ota_client.py sign`)")
    .argument("<firmware>", "the MicroPython OTA build, e.g. firmware-ota.bin")
    .option("--key <file>", "private key (PEM, PKCS#1 or PKCS#8)", DEFAULT_KEY_FILE)
    .option("--block <n>", "firmware bytes per datagram: 256, 512 or 1024", parseBlock, DEFAULT_BLOCK_SIZE)
    .option("-o, --output <file>", "where to write the .ota file (default: FIRMWARE.ota)")
    .option(
      "--force",
      "replace the output file if it exists, and sign despite refusals that can be overridden",
    );
  addPreflightOptions(command).action(async (firmware: string, options: SignOptions) => {
    await sign(io, firmware, options, preflight);
  });
}
