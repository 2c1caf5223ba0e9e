import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { EmulatedDevice } from "../../src/emulator/device.ts";
import type { DeviceTiming } from "../../src/emulator/timing.ts";
import { VirtualClock } from "../../src/net/clock.ts";
import type { LinkProfile } from "../../src/net/impairment.ts";
import { MemoryNetwork } from "../../src/net/memory-network.ts";
import { seededRandom } from "../../src/net/random.ts";
import { type SignedPacket, withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { encodeOtaFile } from "../../src/protocol/ota-file.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { probeBlockSize } from "../../src/transfer/block-probe.ts";
import {
  COMPAT_TUNING,
  DEFAULT_TUNING,
  DeviceSilentError,
  DeviceStoppedError,
  type PushEvent,
  type PushSource,
  type PushTuning,
  push,
  SMALL_WINDOW,
  tuningWithWindow,
} from "../../src/transfer/sender.ts";
import { otaFileSource } from "../../src/transfer/sources.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs1.key"));
const APP = 0x3c000;

function memorySource(image: Uint8Array, block = 256): PushSource {
  const packets = signImage(image, key, block);
  return {
    totalBytes: image.length,
    packets: (async function* () {
      yield* packets;
    })(),
  };
}

async function setup(
  options: { link?: LinkProfile | string; seed?: number; timing?: Partial<DeviceTiming> } = {},
) {
  const clock = new VirtualClock();
  const network = new MemoryNetwork(clock);
  const device = new EmulatedDevice({
    network,
    address: "127.0.0.2",
    clock,
    key,
    random: seededRandom(options.seed ?? 7),
    ...(options.link ? { link: options.link } : {}),
    ...(options.timing ? { timing: options.timing } : {}),
  });
  // Empty flash: boot8266's MD5 check fails, so the device comes up in OTA mode.
  await device.powerOn();
  const channel = await network.bind({ address: "127.0.0.1" });
  return { clock, network, device, channel };
}

function flashImage(device: EmulatedDevice, length: number): Uint8Array {
  return device.flash.read(APP, length);
}

describe("push to the emulated receiver (virtual time)", () => {
  test("a ~600 KiB MicroPython image lands byte-exact at MAIN_APP_OFFSET and boots", async () => {
    const image = buildMicroPythonImage({ size: 600 * 1024, seed: 11 });
    const { clock, device, channel } = await setup();
    const events: PushEvent[] = [];
    const result = await clock.run(
      push({
        channel,
        device: device.endpoint,
        clock,
        source: memorySource(image),
        onEvent: (e) => events.push(e),
      }),
    );
    assert.equal(result.ackedBytes, image.length);
    await clock.run(device.waitForState("app"));
    assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image));
    assert.equal(device.app?.md5, imageIdentity(image));
    assert.equal(device.app?.checked, true);
    assert.equal(device.stats.queueOverflows, 0);
    assert.ok(events.some((e) => e.type === "started"));
    assert.equal(events.at(-1)?.type, "done");
    // The end packet went out five times (the reference client's three only with --compat).
    assert.equal(result.datagramsSent - Math.ceil(image.length / 256) - result.retransmits, 5);
  });

  const rough: LinkProfile = {
    name: "rough",
    inbound: { delayMs: 10, jitterMs: 25, loss: 0.08, duplicate: 0.05 },
    outbound: { delayMs: 10, jitterMs: 25, loss: 0.08, duplicate: 0.05 },
  };
  for (const [mode, tuning] of [
    ["default", undefined],
    ["--compat", COMPAT_TUNING],
  ] as const) {
    test(`${mode}: survives loss, duplication and reordering with every byte in place`, async () => {
      const image = buildMicroPythonImage({ size: 120 * 1024, seed: 12 });
      const { clock, device, channel } = await setup({ link: rough, seed: 3 });
      const result = await clock.run(
        push({
          channel,
          device: device.endpoint,
          clock,
          source: memorySource(image),
          ...(tuning ? { tuning } : {}),
        }),
      );
      await clock.run(device.waitForState("app"));
      assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image));
      assert.ok(result.retransmits > 0, "the rough link should have forced retransmissions");
      const stats = device.linkStats;
      assert.ok(stats && stats.inboundLost > 0 && stats.inboundDuplicated > 0 && stats.outboundLost > 0);
      assert.equal(device.stats.queueOverflows, 0);
    });
  }

  test("the poor link profile: image byte-exact and booted", async () => {
    const image = buildMicroPythonImage({ size: 200 * 1024, seed: 13 });
    const { clock, device, channel } = await setup({ link: "poor", seed: 5 });
    await clock.run(push({ channel, device: device.endpoint, clock, source: memorySource(image) }));
    await clock.run(device.waitForState("app"));
    assert.equal(device.app?.md5, imageIdentity(image));
  });

  test("a canned .ota file streams from disk and lands byte-exact", async () => {
    const image = buildMicroPythonImage({ size: 64 * 1024, seed: 14 });
    const dir = mkdtempSync(join(tmpdir(), "mpota-sender-"));
    const file = join(dir, "fw.ota");
    writeFileSync(file, encodeOtaFile(signImage(image, key, 512).map((p, i) => withSeq(i + 1, p))));
    const streamed = await otaFileSource(file);
    assert.equal(streamed.summary.blockSize, 512);
    // Read the file before the virtual clock runs: real I/O pending while it
    // jumps ahead would look like a silent device. (test/cli/push.test.ts
    // streams canned files from disk in real time.)
    const packets = [];
    for await (const p of streamed.packets) packets.push(p);
    const source: PushSource = {
      totalBytes: streamed.totalBytes,
      packets: (async function* () {
        yield* packets;
      })(),
    };
    const { clock, device, channel } = await setup();
    await clock.run(push({ channel, device: device.endpoint, clock, source }));
    await clock.run(device.waitForState("app"));
    assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image));
  });

  test("nobody listening: gives up after the wait and explains the usual causes", async () => {
    const clock = new VirtualClock();
    const network = new MemoryNetwork(clock);
    const channel = await network.bind();
    const image = buildMicroPythonImage({ size: 40 * 1024 });
    const started = clock.now();
    await assert.rejects(
      clock.run(
        push({
          channel,
          device: { address: "127.0.0.9", port: 8266 },
          clock,
          source: memorySource(image),
          waitMs: 5000,
        }),
      ),
      (e: unknown) =>
        e instanceof DeviceSilentError &&
        /No answer from 127\.0\.0\.9:8266 after 5 s/.test(e.message) &&
        /not in OTA mode/.test(e.message) &&
        /modulus the bootloader was not built with/.test(e.message),
    );
    assert.ok(clock.now() - started <= 5500);
  });

  test("signed with another key: the device drops every packet, flash untouched, the client explains", async () => {
    const stranger = generateKeyPair(512).key;
    const image = buildMicroPythonImage({ size: 40 * 1024 });
    const { clock, device, channel } = await setup();
    const packets = signImage(image, stranger, 256);
    const source: PushSource = {
      totalBytes: image.length,
      packets: (async function* () {
        yield* packets;
      })(),
    };
    await assert.rejects(
      clock.run(push({ channel, device: device.endpoint, clock, source, waitMs: 12_000 })),
      (e: unknown) => e instanceof DeviceSilentError && /key whose modulus/.test(e.message),
    );
    assert.ok(
      device.stats.dropped["bad-sha1"] + device.stats.dropped["bad-signature"] > 0,
      JSON.stringify(device.stats),
    );
    assert.equal(device.stats.acksSent, 0);
    assert.ok(flashImage(device, 4096).every((b) => b === 0xff));
  });

  test("a device that stops answering mid-transfer ends in a bounded time with advice not to resume", async () => {
    const image = buildMicroPythonImage({ size: 100 * 1024, seed: 15 });
    const { clock, device, channel } = await setup();
    let offAt = 0;
    device.events.on("accepted", (e) => {
      if (e.offset === 40 * 1024) {
        offAt = clock.now();
        device.powerOff();
      }
    });
    let failedAt = 0;
    await assert.rejects(
      clock.run(
        push({ channel, device: device.endpoint, clock, source: memorySource(image), stallMs: 8000 }).finally(
          () => {
            failedAt = clock.now();
          },
        ),
      ),
      (e: unknown) =>
        e instanceof DeviceStoppedError &&
        /stopped answering at offset 40\d\d\d of 102400/.test(e.message) &&
        /Do not try to resume/.test(e.message) &&
        e.message.endsWith(
          "If pushes to it keep stopping, its receiver may hold fewer datagrams than the 7 this push counted on while it writes a sector (an overflow can hang yaota8266): push with --window 3 (mpota serve: --push-window 3).",
        ),
    );
    assert.ok(failedAt - offAt <= 9_000, `gave up ${failedAt - offAt} ms after the device went silent`);
  });
});

describe("push under hostile links (virtual time)", () => {
  const hostile: LinkProfile = {
    name: "hostile",
    inbound: { delayMs: 5, jitterMs: 40, loss: 0.15, duplicate: 0.1 },
    outbound: { delayMs: 5, jitterMs: 40, loss: 0.15, duplicate: 0.1 },
  };
  test("every byte lands exactly once in place, 15 % loss, 10 % duplication, 40 ms jitter, 16 seeds x 2 modes", async () => {
    const image = buildMicroPythonImage({ size: 36 * 1024, seed: 21 });
    const sectors = Math.ceil(image.length / 4096);
    for (let seed = 1; seed <= 16; seed++) {
      for (const tuning of [undefined, COMPAT_TUNING]) {
        const { clock, device, channel } = await setup({ link: hostile, seed });
        await clock.run(
          push({
            channel,
            device: device.endpoint,
            clock,
            source: memorySource(image),
            ...(tuning ? { tuning } : {}),
          }),
        );
        await clock.run(device.waitForState("app"));
        const label = `seed ${seed} ${tuning ? "compat" : "default"}`;
        assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image), label);
        assert.equal(device.stats.sectorsWritten, sectors, `${label}: each sector written exactly once`);
        assert.equal(device.stats.queueOverflows, 0, label);
      }
    }
  });
});

// The spec's warning: by code reading, an overflow of the receive queue may
// hang yaota8266. Datagrams queue behind every sector write; the sender must
// count them however long the write takes and however many a queue holds.
describe("the receive queue never overflows (virtual time)", () => {
  async function pushed(
    image: Uint8Array,
    block: number,
    options: { link: string; seed: number; timing?: Partial<DeviceTiming> },
    tuning: PushTuning = DEFAULT_TUNING,
  ) {
    const { clock, device, channel } = await setup(options);
    await clock.run(
      push({ channel, device: device.endpoint, clock, source: memorySource(image, block), tuning }),
    );
    await clock.run(device.waitForState("app"));
    assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image));
    return device.stats.queueOverflows;
  }

  test("a flash chip with the spec's slowest erase, 400 ms a sector, on lan and busy", async () => {
    const image = buildMicroPythonImage({ size: 96 * 1024, seed: 41 });
    for (const link of ["lan", "busy"]) {
      for (const seed of [1, 2]) {
        const overflows = await pushed(image, 256, { link, seed, timing: { sectorEraseMs: 400 } });
        assert.equal(overflows, 0, `${link}, seed ${seed}`);
      }
    }
  });

  test("a receiver that queues only 4 (the spec's smallest): the default window overflows it, --window 3 never does", async () => {
    const image = buildMicroPythonImage({ size: 96 * 1024, seed: 43 });
    const small = tuningWithWindow(SMALL_WINDOW);
    for (const link of ["lan", "busy", "poor"]) {
      for (const block of [256, 1024]) {
        const label = `${link}, ${block}-byte blocks`;
        const timing = { receiveQueue: 4 };
        assert.ok(
          (await pushed(image, block, { link, seed: 1, timing })) > 0,
          `${label}: the default window`,
        );
        assert.equal(await pushed(image, block, { link, seed: 1, timing }, small), 0, label);
      }
    }
  });

  test("1024-byte blocks on a busy link: a sector write every fourth datagram", async () => {
    const image = buildMicroPythonImage({ size: 600 * 1024, seed: 42 });
    for (const seed of [2, 3, 4])
      assert.equal(await pushed(image, 1024, { link: "busy", seed }), 0, `seed ${seed}`);
  });
});

describe("--block auto probe (virtual time)", () => {
  async function probeOn(maxDatagramBytes: number | undefined) {
    const image = buildMicroPythonImage({ size: 64 * 1024, seed: 31 });
    const link: LinkProfile = {
      name: "lan",
      inbound: { delayMs: 2, jitterMs: 0.5, loss: 0, ...(maxDatagramBytes ? { maxDatagramBytes } : {}) },
      outbound: { delayMs: 2, jitterMs: 0.5, loss: 0 },
    };
    const { clock, device, channel } = await setup({ link });
    const large = signImage(image.subarray(0, 1024), key, 1024)[0] as SignedPacket;
    const fallback = signImage(image.subarray(0, 256), key, 256)[0] as SignedPacket;
    const probe = await clock.run(
      probeBlockSize({ channel, device: device.endpoint, clock, large, fallback, waitMs: 20_000 }),
    );
    assert.ok(probe.block);
    await clock.run(
      push({
        channel,
        device: device.endpoint,
        clock,
        source: memorySource(image, probe.block),
        firstSeq: probe.lastSeq,
      }),
    );
    await clock.run(device.waitForState("app"));
    assert.deepEqual(Buffer.from(flashImage(device, image.length)), Buffer.from(image));
    return probe;
  }

  test("uses 1024-byte blocks where the network carries them", async () => {
    const probe = await probeOn(undefined);
    assert.equal(probe.block, 1024);
  });

  test("falls back to 256 where datagrams over 548 bytes vanish, and the image still lands", async () => {
    const probe = await probeOn(548);
    assert.equal(probe.block, 256);
    assert.ok(probe.largeSent >= 2);
  });
});
