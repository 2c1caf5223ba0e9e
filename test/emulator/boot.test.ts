import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkMainApp, decideBoot, ResetReason } from "../../src/emulator/boot.ts";
import { MemoryFlash } from "../../src/emulator/flash.ts";
import { RTC_MAGIC } from "../../src/firmware/rtc-memory.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const APP = 0x3c000;
const config = { mainAppOffset: APP, gpioMask: 0xf035, gpioWaitMs: 3000 };

function flashWith(image?: Uint8Array): MemoryFlash {
  const flash = new MemoryFlash();
  if (image) flash.write(APP, image);
  return flash;
}

const image = buildMicroPythonImage({ size: 48 * 1024, seed: 7 });

describe("boot8266 decision", () => {
  it("boots a valid main app after the full GPIO wait, with its MD5 as identity", () => {
    const d = decideBoot({
      ...config,
      resetReason: ResetReason.powerOn,
      rtcMemory: undefined,
      flash: flashWith(image),
    });
    assert.equal(d.mode, "app");
    assert.equal(d.reason, "app-valid");
    assert.equal(d.gpioWaitedMs, 3000);
    assert.equal(d.app?.md5, imageIdentity(image));
    assert.equal(d.app?.size, image.length - 16);
  });

  it("enters OTA mode on erased flash: the size word reads 0xffffffff", () => {
    const d = decideBoot({
      ...config,
      resetReason: ResetReason.powerOn,
      rtcMemory: undefined,
      flash: flashWith(),
    });
    assert.equal(d.mode, "ota");
    assert.equal(d.reason, "app-invalid");
    assert.equal(d.app?.message, "Invalid main app size: 4294967295");
  });

  it("refuses a size word over 800000 and an MD5 mismatch", () => {
    const big = new Uint8Array(image);
    new DataView(big.buffer).setUint32(0x8ffc, 800001, true);
    assert.equal(checkMainApp(flashWith(big), APP).message, "Invalid main app size: 800001");
    const flipped = new Uint8Array(image);
    flipped[0x9000 + 100] = (flipped[0x9000 + 100] as number) ^ 1;
    const check = checkMainApp(flashWith(flipped), APP);
    assert.equal(check.ok, false);
    assert.match(check.message, /MD5 mismatch/);
    // The first 4 bytes are not covered by the MD5 (makeimg.py skips them).
    const header = new Uint8Array(image);
    header[2] = 3;
    assert.equal(checkMainApp(flashWith(header), APP).ok, true);
  });

  it("boots the app at once on a deep-sleep wake, without checking it", () => {
    const flipped = new Uint8Array(image);
    flipped[0x9000 + 100] = (flipped[0x9000 + 100] as number) ^ 1;
    const d = decideBoot({
      ...config,
      gpioMask: 0,
      resetReason: ResetReason.deepSleepWake,
      rtcMemory: RTC_MAGIC,
      flash: flashWith(flipped),
      gpioChange: () => 5,
    });
    assert.equal(d.mode, "app");
    assert.equal(d.reason, "deep-sleep-wake");
    assert.equal(d.gpioWaitedMs, 0);
    // RTC magic is left alone: deep-sleep wake jumps straight to the app.
    assert.equal(Buffer.from(d.rtcMemory as Uint8Array).toString(), "yaotaota");
  });

  it("enters OTA mode on every boot when gpio_mask is 0, valid app or not", () => {
    const d = decideBoot({
      ...config,
      gpioMask: 0,
      resetReason: ResetReason.powerOn,
      rtcMemory: undefined,
      flash: flashWith(image),
    });
    assert.equal(d.mode, "ota");
    assert.equal(d.reason, "gpio-mask-zero");
  });

  it("consumes RTC magic: OTA mode without the GPIO wait, memory then reads zaotaota", () => {
    const rtc = new Uint8Array([...Buffer.from("yaotaota"), 1, 2, 3]);
    const d = decideBoot({
      ...config,
      resetReason: ResetReason.softRestart,
      rtcMemory: rtc,
      flash: flashWith(image),
    });
    assert.equal(d.mode, "ota");
    assert.equal(d.reason, "rtc-magic");
    assert.equal(d.gpioWaitedMs, 0);
    assert.deepEqual(d.rtcMemory, new Uint8Array([...Buffer.from("zaotaota"), 1, 2, 3]));
    assert.equal(Buffer.from(rtc).toString("latin1", 0, 8), "yaotaota", "the input is not modified");
    const again = decideBoot({
      ...config,
      resetReason: ResetReason.softRestart,
      rtcMemory: d.rtcMemory,
      flash: flashWith(image),
    });
    assert.equal(again.mode, "app");
  });

  it("ignores RTC magic without ulno's patch, and memory shorter than 8 bytes", () => {
    const flash = flashWith(image);
    const off = decideBoot({ ...config, rtcMagic: false, resetReason: 4, rtcMemory: RTC_MAGIC, flash });
    assert.equal(off.reason, "app-valid");
    const short = decideBoot({ ...config, resetReason: 4, rtcMemory: RTC_MAGIC.subarray(0, 7), flash });
    assert.equal(short.reason, "app-valid");
  });

  it("enters OTA mode when a watched GPIO changes during the wait", () => {
    const d = decideBoot({
      ...config,
      resetReason: ResetReason.external,
      rtcMemory: undefined,
      flash: flashWith(image),
      gpioChange: (waitMs) => (waitMs === 3000 ? 1200 : undefined),
    });
    assert.equal(d.mode, "ota");
    assert.equal(d.reason, "gpio-changed");
    assert.equal(d.gpioWaitedMs, 1200);
  });

  it("reads gpio_mask and gpio_wait_ms from a boot sector's parameter area", () => {
    const flash = flashWith(image);
    const sector = new Uint8Array(0x1000).fill(0xff);
    sector[0] = 0xe9;
    new DataView(sector.buffer).setUint32(0xf00, 0, true);
    new DataView(sector.buffer).setUint32(0xf04, 500, true);
    flash.write(0, sector);
    const d = decideBoot({ ...config, resetReason: ResetReason.powerOn, rtcMemory: undefined, flash });
    assert.equal(d.reason, "gpio-mask-zero");
    assert.deepEqual(d.params, { gpioMask: 0, gpioWaitMs: 500, source: "boot sector" });
    new DataView(sector.buffer).setUint32(0xf00, 0x10, true);
    flash.eraseSector(0);
    flash.write(0, sector);
    const waited = decideBoot({ ...config, resetReason: ResetReason.powerOn, rtcMemory: undefined, flash });
    assert.equal(waited.gpioWaitedMs, 500);
    assert.equal(waited.mode, "app");
  });
});
