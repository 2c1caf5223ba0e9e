import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { EmulatedDevice } from "../../src/emulator/device.ts";
import type { AppIdentity } from "../../src/emulator/device-events.ts";
import { FileFlash, FlashFileError } from "../../src/emulator/flash.ts";
import { RTC_MAGIC } from "../../src/firmware/rtc-memory.ts";
import { VirtualClock } from "../../src/net/clock.ts";
import { MemoryNetwork } from "../../src/net/memory-network.ts";
import { type SignedPacket, signPacket, withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { enterOta, referenceKey, rig, sendAndCollect, stopAndWait } from "./test-sender.ts";

const APP = 0x3c000;
const dir = mkdtempSync(join(tmpdir(), "mpota-device-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("emulated device: boot8266", () => {
  it("boots the app on a deep-sleep wake without checking it, even when it is corrupt", async () => {
    const r = await rig();
    const image = buildMicroPythonImage({ size: 40000 });
    image[0x9000 + 5] ^= 0xff;
    r.device.flash.write(APP, image);
    await r.clock.run(r.device.waitForState("ota"));
    assert.equal(
      r.log.some((e) => /MD5 mismatch/.test(e.message)),
      true,
    );
    const start = r.clock.now();
    r.device.reset("deepsleep");
    const app = await r.clock.run(r.device.events.once("appBoot"));
    assert.deepEqual(app, { size: image.length - 16, md5: imageIdentity(image), checked: false });
    assert.equal(r.clock.now() - start, r.device.timing.appBootMs, "no GPIO wait");
  });

  it("enters OTA mode on every boot when gpio_mask is 0", async () => {
    const r = await rig({ settings: { gpioMask: 0 } });
    r.device.flash.write(APP, buildMicroPythonImage({ size: 40000 }));
    await r.clock.run(r.device.waitForState("ota"));
    assert.equal(r.clock.now(), 2500);
    r.device.reset("hard");
    const { decision } = await r.clock.run(r.device.events.once("boot"));
    assert.equal(decision.reason, "gpio-mask-zero");
  });

  it("consumes RTC magic: OTA at 2.5 s, RTC memory then reads zaotaota, the next reset boots the app", async () => {
    const r = await rig();
    const image = buildMicroPythonImage({ size: 40000 });
    r.device.flash.write(APP, image);
    await r.clock.run(r.device.waitForState("app"));
    r.device.rtcMemory = new Uint8Array([...RTC_MAGIC, 42]);
    const resetAt = r.clock.now();
    r.device.reset("soft");
    await r.clock.run(r.device.waitForState("ota"));
    assert.equal(r.clock.now() - resetAt, 2500);
    assert.equal(Buffer.from(r.device.rtcMemory as Uint8Array).toString("latin1"), "zaotaota*");
    r.device.reset("soft");
    const { decision } = await r.clock.run(r.device.events.once("boot"));
    assert.equal(decision.reason, "app-valid");
  });

  it("enters OTA mode when the button is pressed during the GPIO wait", async () => {
    const r = await rig();
    r.device.flash.write(APP, buildMicroPythonImage({ size: 40000 }));
    await r.clock.advance(1000);
    assert.equal(r.device.pressButton(), true);
    await r.clock.run(r.device.waitForState("ota"));
    assert.equal(r.clock.now(), 1000 + 2500);
    assert.equal(r.device.pressButton(), false, "no effect outside the wait");
  });

  it("loses RTC memory on power loss, keeps it over resets, and holds at most 492 bytes", async () => {
    const r = await rig();
    assert.throws(() => {
      r.device.rtcMemory = new Uint8Array(493);
    }, RangeError);
    r.device.rtcMemory = new Uint8Array(492).fill(1);
    r.device.reset("hard");
    assert.equal(r.device.rtcMemory?.length, 492);
    r.device.powerOff();
    assert.equal(r.device.state, "off");
    await r.device.powerOn();
    assert.equal(r.device.rtcMemory, undefined);
  });

  it("ignores datagrams while the app runs and calls onAppBoot", async () => {
    const seen: AppIdentity[] = [];
    const r = await rig({ onAppBoot: (app) => seen.push(app) });
    const image = buildMicroPythonImage({ size: 40000 });
    await enterOta(r);
    await r.push(image);
    await r.clock.run(r.device.waitForState("app"));
    assert.deepEqual(seen, [{ size: image.length - 16, md5: imageIdentity(image), checked: true }]);
    const packet = signPacket(referenceKey, 0, image.subarray(0, 256));
    assert.deepEqual(await sendAndCollect(r, withSeq(1, packet)), []);
    assert.equal(
      r.device.stats.datagramsIgnored,
      1 + 2,
      "the two end packets after the reboot, and this one",
    );
  });

  it("completes a push over the poor link profile (loss and jitter each way)", async () => {
    const r = await rig({ link: "poor" });
    const image = buildMicroPythonImage({ size: 120 * 1024, seed: 11 });
    await enterOta(r);
    const stats = await r.push(image);
    await r.clock.run(r.device.waitForState("app"));
    assert.deepEqual(r.device.flash.read(APP, image.length), image);
    assert.ok(stats.retransmits > 0, "3% loss each way causes retransmissions");
    const link = r.device.linkStats;
    assert.ok(link && link.inboundLost + link.outboundLost > 0);
    assert.ok(r.device.stats.duplicates > 0, "lost acks lead to re-acknowledged duplicates");
  });

  it("a reset between erase and program leaves the sector erased", async () => {
    const r = await rig();
    await enterOta(r);
    r.device.flash.write(APP, new Uint8Array(4096).fill(0));
    const image = buildMicroPythonImage({ size: 40000 });
    const packets = signImage(image, referenceKey, 256).slice(0, 16);
    await r.clock.run(
      stopAndWait({
        channel: r.sender,
        to: r.device.endpoint,
        clock: r.clock,
        packets: packets.slice(0, 15),
      }),
    );
    const last = r.device.events.once("accepted", (e) => e.offset === 15 * 256);
    r.sender.send(r.device.endpoint, withSeq(16, packets[15] as SignedPacket));
    await r.clock.run(last);
    // Reset 20 ms into the 50 ms erase + 15 ms program of the full sector.
    await r.clock.advance(20);
    r.device.reset("hard");
    assert.equal(r.device.stats.sectorsWritten, 0);
    assert.ok(
      r.device.flash.read(APP, 4096).every((b) => b === 0xff),
      "erased, never programmed",
    );
  });
});

describe("emulated device: flash file", () => {
  it("keeps an update across a new EmulatedDevice on the same file", async () => {
    const path = join(dir, "device.flash");
    const image = buildMicroPythonImage({ size: 48 * 1024, seed: 21 });
    const flash = new FileFlash(path);
    const r = await rig({ flash });
    await enterOta(r);
    await r.push(image);
    await r.clock.run(r.device.waitForState("app"));
    await r.device.close();
    flash.close();

    const clock = new VirtualClock();
    const again = new FileFlash(path);
    const device = new EmulatedDevice({
      network: new MemoryNetwork(clock),
      clock,
      key: referenceKey,
      flash: again,
    });
    await device.powerOn();
    const app = await clock.run(device.events.once("appBoot"));
    assert.equal(app.md5, imageIdentity(image));
    assert.equal(app.checked, true);
    await device.close();
    again.close();
  });

  it("rejects a flash file of the wrong size", () => {
    const path = join(dir, "device.flash");
    assert.throws(() => new FileFlash(path, 4 * 1024 * 1024), FlashFileError);
  });
});
