import { type BrokerAddress, parseBroker } from "../../src/agent-host/broker-address.ts";
import type { DeviceTiming } from "../../src/emulator/timing.ts";
import { systemClock } from "../../src/net/clock.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import type { UdpEndpoint } from "../../src/net/udp-channel.ts";
import { encodeCommand, signCommand } from "../../src/protocol/command-signature.ts";
import type { YaotaSettings } from "../../src/protocol/config-h.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readCommandKey } from "../../src/server/trust/command-key.ts";
import type { DeviceAccess } from "../../src/simulator/fleet.ts";
import type { SimulatedDeviceOptions } from "../../src/simulator/simulated-device-options.ts";
import { type PushResult, type PushSource, push } from "../../src/transfer/sender.ts";
import type { TestBroker } from "../agent/support.ts";
import { fixturePath, readFixtureText } from "../support/fixtures.ts";

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

/** The command key these tests sign with (the test servers' key); devices trust it in CMD_KEYS. */
const commandKey = readCommandKey(fixturePath("command-key.pem"));
export const CMD_KEYS = [commandKey.modulusHex];
let lastSeq = 0;

/** An update command for device `dev`, signed as the server signs it (contract v2, a fresh seq each). */
export const command = (dev: string, job: string, fw: string, size: number) =>
  encodeCommand(
    signCommand(
      { op: "ota", dev, seq: ++lastSeq, job, fw, size, ver: "1.0.0", down: 0 },
      commandKey.privateKey,
    ),
  );

/**
 * Device `id` provisioned on a test server, as `mpota devices add` leaves a
 * real one: its own broker login and the server's command keys (CMD_KEYS).
 */
export async function provisioned(
  s: { brokerUrl: string; provision(id: string): Promise<DeviceAccess> },
  id: string,
): Promise<{ broker: BrokerAddress; agent: NonNullable<SimulatedDeviceOptions["agent"]> }> {
  const access = await s.provision(id);
  return {
    broker: { ...parseBroker(s.brokerUrl), username: access.username, password: access.password },
    agent: { config: { ...access.config } },
  };
}
