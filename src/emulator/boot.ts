import { createHash } from "node:crypto";
import { hasRtcMagic } from "../firmware/rtc-memory.ts";
import { MAX_IMAGE_SIZE } from "../protocol/datagram.ts";

/** ESP8266 SDK reset reasons (rst_info.reason). */
export const ResetReason = {
  powerOn: 0,
  hardwareWatchdog: 1,
  exception: 2,
  softwareWatchdog: 3,
  softRestart: 4,
  deepSleepWake: 5,
  external: 6,
} as const;

export const RESET_REASON_NAMES: Record<number, string> = {
  0: "power on",
  1: "hardware watchdog",
  2: "exception",
  3: "software watchdog",
  4: "soft restart",
  5: "deep-sleep wake",
  6: "external reset",
};

/** Where the MicroPython image keeps its size word, relative to MAIN_APP_OFFSET. */
export const APP_SIZE_WORD_OFFSET = 0x8ffc;
/** boot8266's parameter area in its sector: u32 gpio_mask, then u32 gpio_wait_ms. */
export const BOOT_PARAM_OFFSET = 0xf00;
/** First byte of an esptool image: flash offset 0 holds a boot sector. */
export const ESP_IMAGE_MAGIC = 0xe9;

export interface FlashReader {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

export interface BootConfig {
  mainAppOffset: number;
  /** Used unless flash offset 0 holds a boot sector with its own parameters. */
  gpioMask: number;
  gpioWaitMs: number;
  /** Honour RTC magic (ulno's patch; most forks in use have it). Default true. */
  rtcMagic?: boolean;
}

export interface BootInput extends BootConfig {
  resetReason: number;
  /** MicroPython's RTC user memory (its length word is the array's length); undefined when never set. */
  rtcMemory: Uint8Array | undefined;
  flash: FlashReader;
}

export type BootReason =
  | "deep-sleep-wake"
  | "gpio-mask-zero"
  | "rtc-magic"
  | "gpio-changed"
  | "app-valid"
  | "app-invalid";

/** boot8266's check of the main app. */
export interface AppCheck {
  ok: boolean;
  /** The size word at MAIN_APP_OFFSET+0x8ffc. */
  size: number;
  /** The stored MD5 trailer (hex), when the size word was plausible: the app's identity. */
  md5?: string;
  /** What boot8266 would print, or why the check failed. */
  message: string;
}

export interface BootParams {
  gpioMask: number;
  gpioWaitMs: number;
  source: "boot sector" | "configuration";
}

export interface BootDecision {
  mode: "app" | "ota";
  reason: BootReason;
  /** One line saying what happened, for logs. */
  message: string;
  /** How long the GPIO wait ran (ms). */
  gpioWaitedMs: number;
  /** RTC user memory after boot8266 (the magic's first byte rewritten when consumed). */
  rtcMemory: Uint8Array | undefined;
  params: BootParams;
  /** The main app check, when it ran (or the app's trailer on a deep-sleep wake). */
  app?: AppCheck;
}

/** What boot8266 does before it may have to wait for the GPIOs. */
export type EarlyBoot =
  | { done: true; decision: BootDecision }
  | { done: false; rtcMemory: Uint8Array | undefined; params: BootParams };

const u32 = (bytes: Uint8Array, at = 0) =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);

/** gpio_mask and gpio_wait_ms from the boot sector's parameter area, or the configured values when flash offset 0 holds no boot sector. */
export function readBootParams(
  flash: FlashReader,
  config: Pick<BootConfig, "gpioMask" | "gpioWaitMs">,
): BootParams {
  if (flash.size >= 0x1000 && flash.read(0, 1)[0] === ESP_IMAGE_MAGIC) {
    const p = flash.read(BOOT_PARAM_OFFSET, 8);
    return { gpioMask: u32(p, 0), gpioWaitMs: u32(p, 4), source: "boot sector" };
  }
  return { gpioMask: config.gpioMask, gpioWaitMs: config.gpioWaitMs, source: "configuration" };
}

function readTrailer(flash: FlashReader, mainAppOffset: number, size: number): string | undefined {
  const at = mainAppOffset + size;
  if (at + 16 > flash.size) return undefined;
  return Buffer.from(flash.read(at, 16)).toString("hex");
}

function readSizeWord(flash: FlashReader, mainAppOffset: number): number | undefined {
  const at = mainAppOffset + APP_SIZE_WORD_OFFSET;
  return at + 4 > flash.size ? undefined : u32(flash.read(at, 4));
}

/**
 * check_main_app(): the u32 size word at MAIN_APP_OFFSET+0x8ffc must be at
 * most 800000, and the MD5 of flash [MAIN_APP_OFFSET+4, MAIN_APP_OFFSET+size)
 * must equal the 16 bytes that follow.
 */
export function checkMainApp(flash: FlashReader, mainAppOffset: number): AppCheck {
  const size = readSizeWord(flash, mainAppOffset);
  if (size === undefined) {
    return {
      ok: false,
      size: 0,
      message: `MAIN_APP_OFFSET 0x${mainAppOffset.toString(16)} is beyond the end of flash`,
    };
  }
  if (size > MAX_IMAGE_SIZE) return { ok: false, size, message: `Invalid main app size: ${size}` };
  const md5 = readTrailer(flash, mainAppOffset, size);
  if (md5 === undefined)
    return { ok: false, size, message: `main app of ${size} bytes runs past the end of flash` };
  if (size < 4) return { ok: false, size, md5, message: `Invalid main app size: ${size}` };
  const computed = createHash("md5")
    .update(flash.read(mainAppOffset + 4, size - 4))
    .digest("hex");
  if (computed !== md5) {
    return { ok: false, size, md5, message: `main app MD5 mismatch (computed ${computed}, stored ${md5})` };
  }
  return { ok: true, size, md5, message: `main app valid, ${size} bytes, MD5 ${md5}` };
}

/** boot8266 up to the GPIO wait: deep-sleep wake, gpio_mask 0 and RTC magic decide at once. */
export function earlyBoot(input: BootInput): EarlyBoot {
  const params = readBootParams(input.flash, input);
  const base = { gpioWaitedMs: 0, rtcMemory: input.rtcMemory, params };
  if (input.resetReason === ResetReason.deepSleepWake) {
    const size = readSizeWord(input.flash, input.mainAppOffset);
    const md5 =
      size === undefined || size > MAX_IMAGE_SIZE
        ? undefined
        : readTrailer(input.flash, input.mainAppOffset, size);
    const app: AppCheck = {
      ok: true,
      size: size ?? 0,
      ...(md5 === undefined ? {} : { md5 }),
      message: "deep-sleep wake: the main app starts at once, unchecked",
    };
    return {
      done: true,
      decision: { ...base, mode: "app", reason: "deep-sleep-wake", message: app.message, app },
    };
  }
  if (params.gpioMask === 0) {
    return {
      done: true,
      decision: {
        ...base,
        mode: "ota",
        reason: "gpio-mask-zero",
        message: "gpio_mask is 0 (OTA mode on every boot)",
      },
    };
  }
  if (input.rtcMagic !== false && hasRtcMagic(input.rtcMemory)) {
    const rtc = new Uint8Array(input.rtcMemory as Uint8Array);
    rtc[0] = 0x7a; // "z": boot8266 rewrites the first word so the magic fires once
    return {
      done: true,
      decision: {
        ...base,
        rtcMemory: rtc,
        mode: "ota",
        reason: "rtc-magic",
        message: 'Detected magic word in RTC memory (it now reads "zaotaota")',
      },
    };
  }
  return { done: false, rtcMemory: input.rtcMemory, params };
}

/** boot8266 after the GPIO wait: a change means OTA, otherwise the main app check decides. */
export function afterGpioWait(
  input: Pick<BootInput, "flash" | "mainAppOffset">,
  early: Extract<EarlyBoot, { done: false }>,
  changedAtMs: number | undefined,
): BootDecision {
  const base = { rtcMemory: early.rtcMemory, params: early.params };
  if (changedAtMs !== undefined) {
    return {
      ...base,
      gpioWaitedMs: changedAtMs,
      mode: "ota",
      reason: "gpio-changed",
      message: `GPIO changed ${Math.round(changedAtMs)} ms into the ${early.params.gpioWaitMs} ms wait`,
    };
  }
  const app = checkMainApp(input.flash, input.mainAppOffset);
  return {
    ...base,
    gpioWaitedMs: early.params.gpioWaitMs,
    mode: app.ok ? "app" : "ota",
    reason: app.ok ? "app-valid" : "app-invalid",
    message: app.ok ? app.message : `main app check failed: ${app.message}`,
    app,
  };
}

/**
 * boot8266's whole decision as a pure function. `gpioChange(waitMs)` says
 * when (ms into the wait) a watched GPIO input changes, or undefined when
 * none does and the full wait runs.
 */
export function decideBoot(
  input: BootInput & { gpioChange?: (waitMs: number) => number | undefined },
): BootDecision {
  const early = earlyBoot(input);
  if (early.done) return early.decision;
  const at = input.gpioChange?.(early.params.gpioWaitMs);
  return afterGpioWait(
    input,
    early,
    at !== undefined && at >= 0 && at < early.params.gpioWaitMs ? at : undefined,
  );
}
