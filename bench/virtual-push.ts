// One push in virtual time: mpota's sender against a receiver model on an
// in-memory network with a link profile. Deterministic for a given seed, and
// free of the loaded machine's timer noise, so figures compare before/after.
import { EmulatedDevice } from "../src/emulator/device.ts";
import { MemoryFlash } from "../src/emulator/flash.ts";
import { type DeviceTiming, deviceFloorMs } from "../src/emulator/timing.ts";
import { VirtualClock } from "../src/net/clock.ts";
import type { LinkProfile } from "../src/net/impairment.ts";
import { MemoryNetwork } from "../src/net/memory-network.ts";
import { seededRandom } from "../src/net/random.ts";
import type { UdpChannel, UdpEndpoint } from "../src/net/udp-channel.ts";
import type { SignedPacket } from "../src/protocol/datagram.ts";
import { signImage } from "../src/protocol/image-packets.ts";
import type { SigningKey } from "../src/protocol/rsa-key.ts";
import { probeBlockSize } from "../src/transfer/block-probe.ts";
import { COMPAT_TUNING, DEFAULT_TUNING, type PushTuning, push } from "../src/transfer/sender.ts";
import { type ModelBOptions, ModelBReceiver, modelBFloorMs } from "./receiver-model-b.ts";

export const MAIN_APP_OFFSET = 0x3c000;

export type ReceiverModel = "emulator" | "model-b";

export interface VirtualRun {
  model: ReceiverModel;
  link: LinkProfile;
  mode: "mpota" | "compat";
  block: number | "auto";
  seed: number;
  image: Uint8Array;
  key: SigningKey;
  tuning?: PushTuning;
  /** Model B's readings of the link (jitter around the delay, bursty loss), and its oracle hook. */
  modelB?: Pick<ModelBOptions, "jitter" | "burst" | "observe" | "eraseMs" | "slots">;
  /** Another sender in place of mpota's (bench/oracle-sender.ts); 256-byte blocks only. */
  sender?: VirtualSender;
  /** The emulator's costs where they differ from the spec's model (a slower flash). */
  timing?: Partial<DeviceTiming>;
}

export interface VirtualSenderContext {
  channel: UdpChannel;
  device: UdpEndpoint;
  clock: VirtualClock;
  /** The data packets in offset order, then the end packets. */
  packets: SignedPacket[];
}

export type VirtualSender = (
  context: VirtualSenderContext,
) => Promise<{ datagramsSent: number; retransmits: number; timeouts: number }>;

export interface VirtualResult {
  seconds: number;
  floorSeconds: number;
  blockUsed: number;
  datagramsSent: number;
  retransmits: number;
  timeouts: number;
  /** Datagrams the receiver took and dropped for their offset (each still cost it a full datagram's time). */
  unexpected: number;
  queueOverflows: number;
  linkLost: number;
  flashExact: boolean;
}

interface Receiver {
  endpoint: { address: string; port: number };
  unexpected(): number;
  queueOverflows(): number;
  linkLost(): number;
  flash(offset: number, length: number): Uint8Array;
  close(): Promise<void>;
}

async function startReceiver(
  run: VirtualRun,
  clock: VirtualClock,
  network: MemoryNetwork,
): Promise<Receiver> {
  const random = seededRandom(run.seed);
  if (run.model === "model-b") {
    const b = await ModelBReceiver.start({
      network,
      clock,
      address: "127.0.0.2",
      modulus: run.key.modulus,
      link: run.link,
      random,
      mainAppOffset: MAIN_APP_OFFSET,
      ...run.modelB,
    });
    return {
      endpoint: b.endpoint,
      unexpected: () => b.counts.unexpectedOffset,
      queueOverflows: () => b.counts.queueOverflows,
      linkLost: () => b.counts.linkLost,
      flash: (o, l) => b.flashRead(o, l),
      close: () => b.close(),
    };
  }
  const device = new EmulatedDevice({
    network,
    address: "127.0.0.2",
    clock,
    key: run.key,
    flash: new MemoryFlash(1024 * 1024),
    settings: { gpioMask: 0 },
    link: run.link,
    random,
    ...(run.timing ? { timing: run.timing } : {}),
  });
  await device.powerOn();
  await clock.run(device.waitForState("ota"));
  return {
    endpoint: device.endpoint,
    unexpected: () => device.stats.dropped["unexpected-offset"],
    queueOverflows: () => device.stats.queueOverflows,
    linkLost: () => (device.linkStats?.inboundLost ?? 0) + (device.linkStats?.outboundLost ?? 0),
    flash: (o, l) => device.flash.read(o, l),
    close: () => device.close(),
  };
}

export async function runVirtualPush(run: VirtualRun): Promise<VirtualResult> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork(clock);
  const receiver = await startReceiver(run, clock, network);
  const channel = await network.bind({ address: "127.0.0.1" });
  const { image, key } = run;
  try {
    const started = clock.now();
    let block = typeof run.block === "number" ? run.block : 256;
    let firstSeq = 0;
    if (run.block === "auto") {
      const probe = await clock.run(
        probeBlockSize({
          channel,
          device: receiver.endpoint,
          clock,
          large: signImage(image.subarray(0, 1024), key, 1024)[0] as never,
          fallback: signImage(image.subarray(0, 256), key, 256)[0] as never,
          waitMs: 10_000,
        }),
      );
      block = probe.block === 1024 ? 1024 : 256;
      firstSeq = probe.lastSeq;
    }
    const packets = signImage(image, key, block);
    const result = await clock.run(
      run.sender
        ? run.sender({ channel, device: receiver.endpoint, clock, packets })
        : push({
            channel,
            device: receiver.endpoint,
            clock,
            tuning: run.tuning ?? (run.mode === "compat" ? COMPAT_TUNING : DEFAULT_TUNING),
            firstSeq,
            source: {
              totalBytes: image.length,
              packets: (async function* () {
                yield* packets;
              })(),
            },
          }),
    );
    const seconds = (clock.now() - started) / 1000;
    // Let the end packets land and the last sector be written.
    await clock.advance(500);
    const floorMs =
      run.model === "model-b"
        ? modelBFloorMs(image.length, block, run.modelB?.eraseMs)
        : deviceFloorMs(image.length, block, run.timing);
    return {
      seconds,
      floorSeconds: floorMs / 1000,
      blockUsed: block,
      datagramsSent: result.datagramsSent,
      retransmits: result.retransmits,
      timeouts: result.timeouts,
      unexpected: receiver.unexpected(),
      queueOverflows: receiver.queueOverflows(),
      linkLost: receiver.linkLost(),
      flashExact: Buffer.from(receiver.flash(MAIN_APP_OFFSET, image.length)).equals(Buffer.from(image)),
    };
  } finally {
    await channel.close();
    await receiver.close();
  }
}
