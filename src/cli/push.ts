import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import { systemClock } from "../transfer/clock.ts";
import { NodeUdpNetwork } from "../transfer/node-udp.ts";
import { COMPAT_TUNING, DEFAULT_TUNING, type PushResult, push } from "../transfer/sender.ts";
import { imageFileSource, isOtaFile, otaFileSource } from "../transfer/sources.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey, parseIntegerOption } from "./key-options.ts";
import { describeResult, PushProgress } from "./progress.ts";

interface PushCommandOptions {
  to: string;
  port: number;
  key?: string;
  block?: number;
  compat?: boolean;
  wait: number;
  json?: boolean;
}

export async function pushCommand(file: string, options: PushCommandOptions, io: CliIo): Promise<PushResult> {
  const canned = await isOtaFile(file).catch(() => false);
  let source: Awaited<ReturnType<typeof imageFileSource>>;
  let what: string;
  if (canned) {
    if (options.block !== undefined) {
      throw new UsageError(`${file} is a canned .ota file: its block size was fixed when it was signed. Drop --block.`);
    }
    const ota = await otaFileSource(file);
    source = ota;
    what = `${file} (canned, ${ota.summary.dataPackets} datagrams of up to ${ota.summary.blockSize} bytes, checksum OK)`;
  } else {
    const key = loadSigningKey(options.key ?? DEFAULT_KEY_FILE);
    const block = options.block ?? DEFAULT_BLOCK_SIZE;
    source = await imageFileSource(file, key, block);
    what = `${file} (${source.totalBytes} bytes, signed on the fly with ${key.bits}-bit key, ${block}-byte blocks)`;
  }
  const device = { address: options.to, port: options.port };
  const target = `${options.to}:${options.port}`;
  const mode = options.json ? "json" : io.interactive ? "bar" : "lines";
  const progress = new PushProgress(io, mode, target);
  if (!options.json) io.err(`pushing ${what} to ${target}${options.compat ? " in --compat mode" : ""}\n`);
  const channel = await new NodeUdpNetwork().bind({ connect: device });
  try {
    const result = await push({
      channel,
      device,
      clock: systemClock,
      source,
      tuning: options.compat ? COMPAT_TUNING : DEFAULT_TUNING,
      waitMs: options.wait * 1000,
      onEvent: progress.handle,
    });
    if (!options.json) {
      io.out(
        `Update sent to ${target}: ${describeResult(result)}.\nThe device now checks the image's MD5 and boots it; if the check fails it stays in OTA mode and you can push again.\n`,
      );
    }
    return result;
  } finally {
    progress.stop();
    await channel.close();
  }
}

export function registerPushCommand(program: Command, io: CliIo): void {
  program
    .command("push")
    .description(
      "Send a firmware image (signed on the fly) or a canned .ota file to a device in OTA mode over UDP.",
    )
    .argument("<file>", "firmware-ota.bin, or a .ota file made by `mpota sign` or ota_client.py")
    .requiredOption("--to <host>", "the device's IP address or host name")
    .option("--port <port>", "the receiver's UDP port", parseIntegerOption("--port"), 8266)
    .option("--key <file>", `private key for signing an image (default ${DEFAULT_KEY_FILE}); not needed for .ota files`)
    .option("--block <bytes>", "data bytes per datagram: 256 (default), 512 or 1024", parseIntegerOption("--block"))
    .option("--compat", "behave exactly like the reference client: one datagram in flight, 0.3 s timeout")
    .option("--wait <seconds>", "how long to wait for the device to answer at all", parseIntegerOption("--wait"), 30)
    .option("--json", "print machine-readable events, one JSON object per line")
    .addHelpText(
      "after",
      `
Progress goes to stderr (a bar on a terminal, plain lines otherwise); the result to stdout.
Exit codes: 0 sent, 10 push failed, 11 device never answered, 12 device stopped answering,
3 file problem, 4 key problem, 5 damaged .ota file.`,
    )
    .action(async (file: string, options: PushCommandOptions) => {
      if (options.port < 1 || options.port > 65535) throw new UsageError("--port must be between 1 and 65535.");
      await pushCommand(file, options, io);
    });
}
