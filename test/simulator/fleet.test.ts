import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { preflight } from "../../src/firmware/preflight.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { Fleet, loopbackAddresses, sleepyIndexes } from "../../src/simulator/fleet.ts";
import { SimulatorError } from "../../src/simulator/simulator-error.ts";
import {
  buildSyntheticFirmware,
  firmwareIdentity,
  SyntheticFirmwareError,
} from "../../src/simulator/synthetic-firmware.ts";
import { TestBroker } from "../agent/support.ts";
import { addressPool, CMD_KEYS, command, FAST, key, pushImage, SHORT_GPIO, stateWhere } from "./support.ts";

describe("loopback addresses and sleepy shares", () => {
  test("consecutive addresses skip .0 and .255", () => {
    assert.deepEqual(loopbackAddresses(3), ["127.0.1.1", "127.0.1.2", "127.0.1.3"]);
    assert.deepEqual(loopbackAddresses(3, "127.0.1.254"), ["127.0.1.254", "127.0.2.1", "127.0.2.2"]);
    assert.deepEqual(loopbackAddresses(1, "127.0.3.0"), ["127.0.3.1"]);
  });

  test("addresses outside 127.0.0.0/8, malformed ones and running off its end are refused", () => {
    assert.throws(() => loopbackAddresses(2, "192.168.1.10"), /not a loopback address/);
    assert.throws(() => loopbackAddresses(2, "127.0.1"), /not an IPv4 address/);
    assert.throws(() => loopbackAddresses(2, "127.0.1.300"), /not an IPv4 address/);
    assert.throws(() => loopbackAddresses(3, "127.255.255.253"), SimulatorError);
  });

  test("a share of the devices sleeps, spread over the fleet", () => {
    const table: Array<[number, number, number[]]> = [
      [4, 0.5, [1, 3]],
      [3, 0.5, [1]],
      [5, 0.2, [4]],
      [4, 1, [0, 1, 2, 3]],
      [4, 0, []],
      [3, 2, [0, 1, 2]],
    ];
    for (const [count, share, expected] of table) {
      assert.deepEqual([...sleepyIndexes(count, share)], expected, `${count} devices, share ${share}`);
    }
  });
});

describe("synthetic firmware", () => {
  test("deterministic per seed, boot8266-valid, and an OTA build the preflight checks accept", () => {
    const a = buildSyntheticFirmware({ size: 600 * 1024, seed: 5 });
    assert.deepEqual(a, buildSyntheticFirmware({ size: 600 * 1024, seed: 5 }));
    assert.notEqual(
      firmwareIdentity(a),
      firmwareIdentity(buildSyntheticFirmware({ size: 600 * 1024, seed: 6 })),
    );
    assert.equal(a.length, 600 * 1024);
    const result = preflight(a, { flashSize: 0x100000 });
    assert.equal(result.ok, true, JSON.stringify(result.verdicts));
    assert.equal(result.build, "ota");
    assert.equal(result.identity, firmwareIdentity(a));
    assert.equal(result.version, "v1.27.0");
    assert.deepEqual(
      result.verdicts.filter((v) => v.level !== "ok").map((v) => v.check),
      [],
    );
  });

  test("sizes boot8266 cannot take are refused with the range", () => {
    assert.throws(() => buildSyntheticFirmware({ size: 1000 }), SyntheticFirmwareError);
    assert.throws(() => buildSyntheticFirmware({ size: 900_000 }), /refuses images above 800000/);
  });
});

describe("a fleet against a real broker", () => {
  const nextAddress = addressPool();
  let broker: TestBroker;
  before(async () => {
    broker = await TestBroker.start();
  });
  after(async () => {
    await broker.close();
  });

  test("devices on their own addresses, a share asleep; updating one leaves the others alone", async () => {
    const imageA = buildSyntheticFirmware({ size: 40_000, seed: 11 });
    const imageB = buildSyntheticFirmware({ size: 44_000, seed: 12 });
    const fwA = firmwareIdentity(imageA);
    const fwB = firmwareIdentity(imageB);
    const first = nextAddress();
    const fleet = new Fleet({
      count: 3,
      broker: broker.url,
      key,
      firmware: imageA,
      sleepSeconds: 30,
      sleepyShare: 0.5,
      idPrefix: "fl",
      firstAddress: first,
      link: "lan",
      timing: FAST,
      settings: SHORT_GPIO,
      // As provisioning gives them: a login of its own (this broker takes any) and the command keys.
      access: (id) => ({ username: id, password: `secret-${id}`, config: { CMD_KEYS } }),
    });
    try {
      await fleet.start();
      const addresses = loopbackAddresses(3, first);
      for (const [i, id] of ["fl-1", "fl-2", "fl-3"].entries()) {
        const state = await stateWhere(broker, id, () => true);
        assert.deepEqual(
          [state.fw, state.ip, state.sleep],
          [fwA, addresses[i], id === "fl-2" ? 30 : 0],
          `state of ${id}`,
        );
      }
      // Each device logged in with its own credential, its id as client id.
      for (const id of ["fl-1", "fl-2", "fl-3"]) {
        assert.deepEqual(
          broker.logins.find((l) => l.clientId === id),
          { clientId: id, username: id, password: `secret-${id}` },
          `login of ${id}`,
        );
      }
      await fleet.device("fl-2")?.waitForStatus("sleeping", 10_000);
      await fleet.device("fl-1")?.waitForStatus("awake", 10_000);
      await fleet.device("fl-3")?.waitForStatus("awake", 10_000);

      await broker.publish("mpota/fl-1/cmd", command("fl-1", "j-fl", fwB as string, imageB.length), true);
      const ack = JSON.parse(await broker.seen("mpota/fl-1/ack"));
      assert.equal(ack.ip, addresses[0]);
      await fleet.device("fl-1")?.waitForStatus("ota", 10_000);
      await pushImage({ address: ack.ip, port: ack.port }, imageB);
      await stateWhere(broker, "fl-1", (s) => s.fw === fwB);
      await broker.publish("mpota/fl-1/cmd", "", true);

      assert.deepEqual(
        fleet.summary().map((s) => [s.id, s.address, s.port, s.fw, s.sleepSeconds, s.link, s.updates]),
        [
          ["fl-1", addresses[0], 8266, fwB, 0, "lan", 1],
          ["fl-2", addresses[1], 8266, fwA, 30, "lan", 0],
          ["fl-3", addresses[2], 8266, fwA, 0, "lan", 0],
        ],
      );
      assert.equal(fleet.device("fl-2")?.status, "sleeping");
      assert.equal(broker.on("mpota/fl-3/ack").length, 0);
    } finally {
      await fleet.stop();
    }
    // Powered off without a clean disconnect: the broker publishes the always-on devices' last wills.
    await broker.seen("mpota/fl-1/status", "offline");
    await broker.seen("mpota/fl-3/status", "offline");
    assert.ok(fleet.summary().every((s) => s.status === "off"));
  });

  test("more ESP32s and Pico Ws than devices are refused before anything is made", () => {
    assert.throws(
      () =>
        new Fleet({
          count: 2,
          broker: broker.url,
          firmware: buildSyntheticFirmware({ size: 40_000 }),
          esp32: { count: 1, firmware: new Uint8Array(0) },
          picoW: { count: 2 },
        }),
      (error: Error) => {
        assert.ok(error instanceof SimulatorError);
        assert.equal(
          error.message,
          "A fleet of 2 devices cannot hold 3 ESP32s and Pico Ws (1 + 2): raise count or ask for fewer.",
        );
        return true;
      },
    );
  });

  test("an address already taken stops the fleet with advice, releasing what it bound", async () => {
    const first = nextAddress();
    const taken = loopbackAddresses(2, first)[1] as string;
    nextAddress();
    const blocker = await new NodeUdpNetwork().bind({ address: taken, port: 8266 });
    try {
      const fleet = new Fleet({
        count: 2,
        broker: broker.url,
        key,
        firmware: buildSyntheticFirmware({ size: 40_000 }),
        idPrefix: "clash",
        firstAddress: first,
        timing: FAST,
        settings: SHORT_GPIO,
      });
      await assert.rejects(fleet.start(), (error: Error) => {
        assert.ok(error instanceof SimulatorError);
        assert.equal(
          error.message,
          `UDP port 8266 on ${taken} is already in use (another simulator, emulator or receiver?). Stop it, or start the fleet at another address (\`mpota simulate --first-address 127.0.2.1\`, for example).`,
        );
        return true;
      });
      assert.ok(fleet.summary().every((s) => s.status === "off"));
      // The first device's port was released again.
      const again = await new NodeUdpNetwork().bind({ address: first, port: 8266 });
      await again.close();
    } finally {
      await blocker.close();
    }
  });
});
