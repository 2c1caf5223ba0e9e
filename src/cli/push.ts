import type { Command } from "commander";
import { UsageError } from "../errors.ts";
import { systemClock } from "../net/clock.ts";
import { NodeUdpNetwork } from "../net/node-udp.ts";
import { PushTargetError, resolvePushTarget } from "../net/push-target.ts";
import type { UdpChannel, UdpEndpoint } from "../net/udp-channel.ts";
import { checkBlockSize, DEFAULT_BLOCK_SIZE } from "../protocol/datagram.ts";
import type { SigningKey } from "../protocol/rsa-key.ts";
import { probeBlockSize } from "../transfer/block-probe.ts";
import {
  COMPAT_TUNING,
  DEFAULT_TUNING,
  DeviceSilentError,
  MAX_WINDOW,
  type PushResult,
  type PushSource,
  type PushTuning,
  push,
  SMALL_WINDOW,
  tuningWithWindow,
} from "../transfer/sender.ts";
import { firstImagePacket, imageFileSource, isOtaFile, otaFileSource } from "../transfer/sources.ts";
import { rejectPortInAddress } from "./address-option.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadSigningKey, parseIntegerOption } from "./key-options.ts";
import { unusualKeyWarning } from "./keys.ts";
import { addPreflightOptions, type PreflightCliOptions, preflightFile } from "./preflight-check.ts";
import { describeResult, PushProgress } from "./progress.ts";

/** The block `--block auto` tries first. */
export const AUTO_LARGE_BLOCK = 1024;

export type BlockChoice = number | "auto";

export function parseBlockOption(value: string): BlockChoice {
  if (value === "auto") return "auto";
  return checkBlockSize(parseIntegerOption("--block")(value));
}

interface PushCommandOptions extends PreflightCliOptions {
  to: string;
  port: number;
  key?: string;
  block?: BlockChoice;
  compat?: boolean;
  window?: number;
  wait: number;
  json?: boolean;
}

async function chooseAutoBlock(
  file: string,
  key: SigningKey,
  channel: UdpChannel,
  device: UdpEndpoint,
  waitMs: number,
  io: CliIo,
  json: boolean,
): Promise<{ block: number; lastSeq: number }> {
  const [large, fallback] = await Promise.all([
    firstImagePacket(file, key, AUTO_LARGE_BLOCK),
    firstImagePacket(file, key, DEFAULT_BLOCK_SIZE),
  ]);
  const probe = await probeBlockSize({ channel, device, clock: systemClock, large, fallback, waitMs });
  if (probe.block === undefined) {
    throw new DeviceSilentError(
      `No answer from ${device.address}:${device.port} to ${probe.largeSent + probe.fallbackSent} probe datagrams in ${Math.round(waitMs / 1000)} s (neither ${AUTO_LARGE_BLOCK}- nor ${DEFAULT_BLOCK_SIZE}-byte blocks). Is the device running (an emulator started with \`&\`: see \`jobs\`), in OTA mode at that address, and was its bootloader built with this key's modulus? Raise --wait if it needs longer to enter OTA mode.`,
    );
  }
  const block = probe.block === AUTO_LARGE_BLOCK ? AUTO_LARGE_BLOCK : DEFAULT_BLOCK_SIZE;
  if (json)
    io.out(`${JSON.stringify({ type: "probe", block, target: `${device.address}:${device.port}` })}\n`);
  else {
    io.err(
      block === AUTO_LARGE_BLOCK
        ? `${AUTO_LARGE_BLOCK}-byte blocks get through: using them\n`
        : `${AUTO_LARGE_BLOCK}-byte blocks do not get through this network: using ${DEFAULT_BLOCK_SIZE}\n`,
    );
  }
  return { block, lastSeq: probe.lastSeq };
}

/** The push line's note of a window the user chose. */
const inFlight = (options: PushCommandOptions) =>
  options.window !== undefined ? `, at most ${options.window} datagrams in flight` : "";

/** The sender's tuning the options ask for; a bad --window, or one with --compat, is a usage error. */
function pushTuning(options: PushCommandOptions): PushTuning {
  if (options.window === undefined) return options.compat ? COMPAT_TUNING : DEFAULT_TUNING;
  if (options.compat)
    throw new UsageError(
      "--window and --compat together: --compat keeps one datagram in flight, as the reference client does. Give one of them.",
    );
  return tuningWithWindow(options.window);
}

export async function pushCommand(file: string, options: PushCommandOptions, io: CliIo): Promise<PushResult> {
  const tuning = pushTuning(options);
  // A target that cannot be one device fails before any file is read.
  const device = { address: await resolvePushTarget(options.to), port: options.port };
  const canned = await isOtaFile(file).catch(() => false);
  const checkImage = () => preflightFile(file, options, io);
  const target = `${options.to}:${options.port}`;
  const waitMs = options.wait * 1000;
  let key: SigningKey | undefined;
  let ota: Awaited<ReturnType<typeof otaFileSource>> | undefined;
  if (canned) {
    if (options.block !== undefined) {
      throw new UsageError(
        `${file} is a canned .ota file: its block size was fixed when it was signed. Drop --block.`,
      );
    }
    ota = await otaFileSource(file);
    await checkImage();
  } else {
    key = loadSigningKey(options.key ?? DEFAULT_KEY_FILE);
    const warning = unusualKeyWarning(
      key.bits,
      typeof options.block === "number" ? options.block : DEFAULT_BLOCK_SIZE,
    );
    if (warning !== undefined) io.err(`warning: ${warning}\n`);
    // Fail on a bad image before touching the network.
    await imageFileSource(file, key, typeof options.block === "number" ? options.block : DEFAULT_BLOCK_SIZE);
    await checkImage();
  }
  const channel = await new NodeUdpNetwork().bind({ connect: device }).catch((error: Error) => {
    throw new PushTargetError(
      `Cannot open a UDP socket to ${target}: ${error.message}. Check the address (and that this machine has a route to it).`,
      { cause: error },
    );
  });
  const mode = options.json ? "json" : io.interactive ? "bar" : "lines";
  const progress = new PushProgress(io, mode, target);
  try {
    let source: PushSource;
    let firstSeq = 0;
    if (ota) {
      source = ota;
      if (!options.json) {
        io.err(
          `pushing ${file} (canned: ${ota.summary.dataPackets} datagrams of up to ${ota.summary.blockSize} bytes, checksum OK) to ${target}${inFlight(options)}\n`,
        );
      }
    } else {
      const signingKey = key as SigningKey;
      let block = typeof options.block === "number" ? options.block : DEFAULT_BLOCK_SIZE;
      if (options.block === "auto") {
        if (!options.json) io.err(`probing ${target} for ${AUTO_LARGE_BLOCK}-byte blocks\n`);
        const chosen = await chooseAutoBlock(
          file,
          signingKey,
          channel,
          device,
          waitMs,
          io,
          options.json === true,
        );
        block = chosen.block;
        firstSeq = chosen.lastSeq;
      }
      source = await imageFileSource(file, signingKey, block);
      if (!options.json) {
        io.err(
          `pushing ${file} (${source.totalBytes} bytes, signed on the fly with a ${signingKey.bits}-bit key, ${block}-byte blocks) to ${target}${options.compat ? " in --compat mode" : ""}${inFlight(options)}\n`,
        );
      }
    }
    const result = await push({
      channel,
      device,
      clock: systemClock,
      source,
      tuning,
      waitMs,
      firstSeq,
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
  const command = program
    .command("push")
    .description(
      "Send a firmware image (signed on the fly) or a canned .ota file to a device in OTA mode over UDP.",
    )
    .argument("<file>", "firmware-ota.bin, or a .ota file made by `mpota sign` or ota_client.py")
    .requiredOption("--to <host>", "the device's IP address or host name")
    .option("--port <port>", "the receiver's UDP port", parseIntegerOption("--port"), 8266)
    .option(
      "--key <file>",
      `private key for signing an image (default ${DEFAULT_KEY_FILE}); not needed for .ota files`,
    )
    .option(
      "--block <bytes>",
      `data bytes per datagram: 256 (default), 512, 1024, or auto (try ${AUTO_LARGE_BLOCK}, fall back to 256)`,
      parseBlockOption,
    )
    .option("--compat", "behave exactly like the reference client: one datagram in flight, 0.3 s timeout")
    .option(
      "--window <n>",
      `most datagrams in flight, 1 to ${MAX_WINDOW} (default ${DEFAULT_TUNING.maxWindow}, for a receiver that queues 7 while it writes a sector)`,
      parseIntegerOption("--window"),
    )
    .option(
      "--wait <seconds>",
      "how long to wait for the device to answer at all",
      parseIntegerOption("--wait"),
      30,
    )
    .option("--json", "print machine-readable events, one JSON object per line")
    .option("--force", "push despite firmware-check refusals that can be overridden");
  addPreflightOptions(command)
    .addHelpText(
      "after",
      `
Larger blocks are faster (fewer datagrams for the receiver to log), but some
networks drop datagrams of 549 bytes or more; --block auto finds out.
A device whose pushes keep stopping may queue fewer datagrams than mpota counts on
(an overflow can hang yaota8266): try --window ${SMALL_WINDOW}, which fits the smallest queue known (4).
Progress goes to stderr (a bar on a terminal, plain lines otherwise); the result to stdout.
Before anything is sent the firmware is checked (mpota check): an OTA build, an intact
MD5 trailer, and room in the device's flash (--flash-size, default 1M).
Exit codes: 0 sent, 30 push failed, 31 device never answered, 32 device stopped answering,
33 --to is not one device (broadcast, multicast, 0.0.0.0, or a name that does not resolve), 2 usage, 3 file problem, 4 key problem, 5 damaged .ota file, 10 firmware refused by the checks.`,
    )
    .action(async (file: string, options: PushCommandOptions) => {
      rejectPortInAddress("--to", options.to);
      if (options.port < 1 || options.port > 65535)
        throw new UsageError("--port must be between 1 and 65535.");
      await pushCommand(file, options, io);
    });
}
