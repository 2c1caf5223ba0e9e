import type { DeviceTiming } from "../../src/emulator/timing.ts";
import type { YaotaSettings } from "../../src/protocol/config-h.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { systemClock } from "../../src/transfer/clock.ts";
import { NodeUdpNetwork } from "../../src/transfer/node-udp.ts";
import { type PushResult, type PushSource, push } from "../../src/transfer/sender.ts";
import type { UdpEndpoint } from "../../src/transfer/udp-channel.ts";
import type { TestBroker } from "../agent/support.ts";
import { readFixtureText } from "../support/fixtures.ts";

export const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
export const APP = 0x3c000;

/** A fast emulator (interop, not speed, is what these tests check), as in test/cli/push.test.ts. */
export const FAST: Partial<DeviceTiming> = {
  baudRate: 4_000_000,
  checkMs: 0.2,
  sectorEraseMs: 4,
  sectorProgramMs: 1,
  otaBootMs: 200,
  appBootMs: 50,
};

/** boot8266's GPIO wait, shortened so a reset without magic does not take 3 s. */
export const SHORT_GPIO: Partial<YaotaSettings> = { gpioWaitMs: 100 };

/**
 * Loopback addresses for this file's devices: a third octet picked at random
 * in a random 127.x.y.0/24, so test files running side by side do not collide on
 * port 8266 (the port the agent acks).
 */
export function addressPool(): () => string {
  // A random /24 out of about 38,000 in 127.0.0.0/8 (not 127.0.x.x, which other tools use), so
  // test files running at the same time (and the PostgreSQL pass) do not pick the same addresses.
  const second = 100 + Math.floor(Math.random() * 150);
  const third = Math.floor(Math.random() * 256);
  let host = 1;
  return () => `127.${second}.${third}.${host++}`;
}

export function memorySource(image: Uint8Array, block = 256): PushSource {
  const packets = signImage(image, key, block);
  return {
    totalBytes: image.length,
    packets: (async function* () {
      yield* packets;
    })(),
  };
}

/** Pushes `image` as the update server would: real UDP from 127.0.0.1 to the device's address. */
export async function pushImage(device: UdpEndpoint, image: Uint8Array): Promise<PushResult> {
  const channel = await new NodeUdpNetwork().bind({ address: "127.0.0.1" });
  try {
    return await push({
      channel,
      device,
      clock: systemClock,
      source: memorySource(image),
      waitMs: 10_000,
      stallMs: 5_000,
    });
  } finally {
    await channel.close();
  }
}

export type State = { v: number; fw: string; ip: string; wake: string; sleep: number } & Record<
  string,
  unknown
>;

/** Resolves with the first state on `mpota/<id>/state` the watcher saw that satisfies `match`. */
export async function stateWhere(
  broker: TestBroker,
  id: string,
  match: (state: State) => boolean,
  timeoutMs = 15_000,
): Promise<State> {
  const topic = `mpota/${id}/state`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = broker
      .on(topic)
      .map((p) => JSON.parse(p) as State)
      .find(match);
    if (found) return found;
    if (Date.now() > deadline) {
      throw new Error(
        `no matching state on ${topic} within ${timeoutMs} ms; saw ${broker.on(topic).join(" | ")}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const command = (job: string, fw: string, size: number) =>
  JSON.stringify({ op: "ota", job, fw, size });
