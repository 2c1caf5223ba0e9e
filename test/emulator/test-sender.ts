// A tiny stop-and-wait sender for the emulator's tests (the reference
// client's behaviour: one datagram in flight, resend on timeout), plus the
// setup every device test needs. Not the product's sender.

import { EmulatedDevice } from "../../src/emulator/device.ts";
import type { DeviceLogEntry } from "../../src/emulator/device-events.ts";
import type { EmulatedDeviceOptions } from "../../src/emulator/device-options.ts";
import { RTC_MAGIC } from "../../src/firmware/rtc-memory.ts";
import type { Clock } from "../../src/net/clock.ts";
import { VirtualClock } from "../../src/net/clock.ts";
import { MemoryNetwork } from "../../src/net/memory-network.ts";
import type { UdpChannel, UdpEndpoint } from "../../src/net/udp-channel.ts";
import { type Ack, decodeAck, type SignedPacket, withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { parsePrivateKeyPem, type SigningKey } from "../../src/protocol/rsa-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

export const referenceKey: SigningKey = parsePrivateKeyPem(
  readFixtureText("reference/priv-pkcs1.key"),
  "priv-pkcs1.key",
);

export interface SendStats {
  acks: Ack[];
  retransmits: number;
  seq: number;
}

/** Waits for one reply matching `match`, or undefined after `timeoutMs`. */
export function nextReply(
  channel: UdpChannel,
  clock: Clock,
  timeoutMs: number,
  match: (data: Uint8Array) => boolean = () => true,
): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const timer = clock.setTimer(timeoutMs, () => {
      off();
      resolve(undefined);
    });
    const off = channel.onMessage((data) => {
      if (!match(data)) return;
      timer.cancel();
      off();
      resolve(new Uint8Array(data));
    });
  });
}

/**
 * Sends data packets one at a time, each until its ack (same seq, offset
 * and length) arrives; then, unless `end` is false, the end packets 100 ms
 * apart. Throws after `maxTries` unanswered sends of one packet.
 */
export async function stopAndWait(options: {
  channel: UdpChannel;
  to: UdpEndpoint;
  clock: Clock;
  packets: SignedPacket[];
  timeoutMs?: number;
  maxTries?: number;
  firstSeq?: number;
}): Promise<SendStats> {
  const { channel, to, clock } = options;
  const stats: SendStats = { acks: [], retransmits: 0, seq: options.firstSeq ?? 1 };
  for (const packet of options.packets) {
    if (packet.length === 0) {
      channel.send(to, withSeq(stats.seq++, packet));
      await clock.sleep(100);
      continue;
    }
    let tries = 0;
    for (;;) {
      const seq = stats.seq++;
      const reply = nextReply(channel, clock, options.timeoutMs ?? 300, (data) => {
        const ack = decodeAck(data);
        return (
          ack !== undefined && ack.seq === seq && ack.offset === packet.offset && ack.length === packet.length
        );
      });
      channel.send(to, withSeq(seq, packet));
      const data = await reply;
      if (data) {
        stats.acks.push(decodeAck(data) as Ack);
        break;
      }
      stats.retransmits++;
      if (++tries >= (options.maxTries ?? 20)) {
        throw new Error(`no ack for offset ${packet.offset} after ${tries} tries`);
      }
    }
  }
  return stats;
}

export interface Rig {
  clock: VirtualClock;
  network: MemoryNetwork;
  device: EmulatedDevice;
  sender: UdpChannel;
  log: DeviceLogEntry[];
  /** Log messages only. */
  lines(): string[];
  push(
    image: Uint8Array,
    block?: number,
    opts?: { key?: SigningKey; timeoutMs?: number },
  ): Promise<SendStats>;
}

/** A device on an in-memory network in virtual time, and a sender channel. */
export async function rig(options: Partial<EmulatedDeviceOptions> = {}): Promise<Rig> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork(clock);
  const log: DeviceLogEntry[] = [];
  const device = new EmulatedDevice({
    network,
    address: "127.0.0.2",
    clock,
    key: referenceKey,
    logger: (e) => log.push(e),
    ...options,
  });
  await device.powerOn();
  const sender = await network.bind({ address: "127.0.0.1" });
  const r: Rig = {
    clock,
    network,
    device,
    sender,
    log,
    lines: () => log.map((e) => e.message),
    push: (image, block = 256, opts = {}) =>
      clock.run(
        stopAndWait({
          channel: sender,
          to: device.endpoint,
          clock,
          packets: signImage(image, opts.key ?? referenceKey, block),
          ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        }),
      ),
  };
  return r;
}

/** Puts the device into OTA mode the way ota.start() does: RTC magic, soft reset. */
export async function enterOta(r: Rig): Promise<void> {
  r.device.rtcMemory = RTC_MAGIC;
  r.device.reset("soft");
  await r.clock.run(r.device.waitForState("ota"));
}

/** Sends one datagram and collects every reply within `waitMs`. */
export async function sendAndCollect(r: Rig, datagram: Uint8Array, waitMs = 500): Promise<Uint8Array[]> {
  const replies: Uint8Array[] = [];
  const off = r.sender.onMessage((data) => replies.push(new Uint8Array(data)));
  r.sender.send(r.device.endpoint, datagram);
  await r.clock.advance(waitMs);
  off();
  return replies;
}
