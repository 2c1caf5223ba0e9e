import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BootDecision } from "../../src/emulator/boot.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { enterOta, referenceKey, rig, stopAndWait } from "./test-sender.ts";

const APP = 0x3c000;
const SECTOR = 4096;

describe("receiver timers", () => {
  it("PKT_WAIT_MS restarts the session but keeps the stale buffer: the retried image lands shifted and fails the MD5 check", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 64 * 1024, seed: 5 });
    const packets = signImage(image, referenceKey, 256);
    const data = packets.filter((p) => p.length > 0);
    // First attempt: 3 sectors and 5 more datagrams, then the sender goes quiet.
    const k = 5 * 256;
    const first = await r.clock.run(
      stopAndWait({
        channel: r.sender,
        to: r.device.endpoint,
        clock: r.clock,
        packets: data.slice(0, 3 * 16 + 5),
      }),
    );
    assert.deepEqual(r.device.receiverState, { expectedOffset: 3 * SECTOR + k, buffered: k });
    const lastAck = r.clock.now();
    const restart = r.device.events.once("sessionRestart");
    const { atMs, buffered } = await r.clock.run(restart);
    assert.ok(
      atMs - lastAck > 10_000 && atMs - lastAck <= 11_100,
      `restart ${atMs - lastAck} ms after the last ack`,
    );
    assert.equal(buffered, k);
    assert.ok(r.lines().includes("Next pkt wait timeout, restarting recv"));
    // The sector buffer survived the restart.
    assert.deepEqual(r.device.receiverState, { expectedOffset: 0, buffered: k });

    // Second attempt from offset 0, complete, with the same block size.
    const decision = r.device.events.once("boot", (b) => b.resetReason === 4);
    await r.clock.run(
      stopAndWait({ channel: r.sender, to: r.device.endpoint, clock: r.clock, packets, firstSeq: first.seq }),
    );
    const { decision: d } = (await r.clock.run(decision)) as { decision: BootDecision };

    // Sector 0: the k stale bytes (image bytes of the first attempt), then the image from 0.
    const sector0 = r.device.flash.read(APP, SECTOR);
    assert.deepEqual(sector0.subarray(0, k), image.subarray(3 * SECTOR, 3 * SECTOR + k));
    assert.deepEqual(sector0.subarray(k), image.subarray(0, SECTOR - k));
    // Every later sector holds the image shifted by k bytes.
    for (const j of [1, 5, 9, 14]) {
      assert.deepEqual(
        r.device.flash.read(APP + j * SECTOR, SECTOR),
        image.subarray(j * SECTOR - k, (j + 1) * SECTOR - k),
        `sector ${j}`,
      );
    }
    // boot8266 refuses the result and goes back to the receiver.
    assert.equal(d.mode, "ota");
    assert.equal(d.reason, "app-invalid");
    await r.clock.run(r.device.waitForState("ota"));
  });

  it("after a PKT_WAIT restart, a block size that does not fit the stale fill is dropped as Buffer overflow", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 64 * 1024, seed: 6 });
    const small = signImage(image, referenceKey, 256).filter((p) => p.length > 0);
    await r.clock.run(
      stopAndWait({ channel: r.sender, to: r.device.endpoint, clock: r.clock, packets: small.slice(0, 5) }),
    );
    await r.clock.run(r.device.events.once("sessionRestart"));
    // 1280 stale bytes + 1024 + 1024 fit; the third 1024-byte block overflows, and keeps doing so.
    const big = signImage(image, referenceKey, 1024).filter((p) => p.length > 0);
    await assert.rejects(
      r.clock.run(
        stopAndWait({
          channel: r.sender,
          to: r.device.endpoint,
          clock: r.clock,
          packets: big.slice(0, 3),
          maxTries: 5,
          firstSeq: 100,
        }),
      ),
      /no ack for offset 2048/,
    );
    assert.equal(r.device.stats.dropped["buffer-overflow"], 5);
    assert.deepEqual(r.device.receiverState, { expectedOffset: 2048, buffered: 1280 + 2048 });
  });

  it("IDLE_REBOOT_MS: with no first packet the receiver reboots, and boot8266 decides again", async () => {
    const r = await rig();
    const image = buildMicroPythonImage({ size: 40000 });
    r.device.flash.write(APP, image);
    await enterOta(r);
    const otaAt = r.clock.now();
    const reset = r.device.events.once("reset");
    const decided = r.device.events.once("boot");
    const { atMs, resetReason } = await r.clock.run(reset);
    assert.equal(resetReason, 4, "system_restart() is a soft restart");
    assert.ok(atMs - otaAt > 60_000 && atMs - otaAt <= 61_100, `rebooted ${atMs - otaAt} ms after OTA start`);
    const { decision } = await r.clock.run(decided);
    assert.ok(r.lines().includes("OTA start timeout, rebooting"));
    // RTC magic was consumed, so this time boot8266 waits for the GPIOs and boots the valid app.
    assert.equal(decision.reason, "app-valid");
    await r.clock.run(r.device.waitForState("app"));
  });

  it("IDLE_REBOOT_MS is re-armed by a PKT_WAIT restart", async () => {
    const r = await rig({ settings: { idleRebootMs: 20_000 } });
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000 });
    const packets = signImage(image, referenceKey, 256).filter((p) => p.length > 0);
    await r.clock.run(
      stopAndWait({ channel: r.sender, to: r.device.endpoint, clock: r.clock, packets: packets.slice(0, 2) }),
    );
    const { atMs: restartAt } = await r.clock.run(r.device.events.once("sessionRestart"));
    const { atMs } = await r.clock.run(r.device.events.once("reset"));
    assert.ok(atMs - restartAt > 20_000 && atMs - restartAt <= 21_100, `${atMs - restartAt}`);
  });
});
