import { isIP } from "node:net";
import { type AppState, parseAppState } from "./app-state.ts";

/**
 * The device side of the MQTT contract, version 1 (docs/mqtt.md): payload
 * types and the validation the server applies to everything a device sends.
 * Devices in the field run agents built against v1 for years: this file
 * only ever accepts more, never less.
 */

export const CONTRACT_VERSION = 3;
/** The contract versions this server reads: agents of version 1 stay in the field for years. */
export const CONTRACT_VERSIONS: readonly number[] = [1, 2, 3];

/** `[A-Za-z0-9_-]{1,64}`, as the contract says. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `<base>/bridge/...` is the server's own namespace, so a device called
 * `bridge` would collide with it (`<base>/bridge/state` is the server's
 * state). The server refuses that one id.
 */
export const RESERVED_DEVICE_IDS: ReadonlySet<string> = new Set(["bridge"]);

/** Largest payloads the server reads from devices; anything larger is logged and ignored. */
export const MAX_STATE_BYTES = 2048;
export const MAX_STATUS_BYTES = 32;
export const MAX_ACK_BYTES = 1024;

export type DeviceStatus = "online" | "sleeping" | "ota" | "offline";
export const DEVICE_STATUSES: readonly DeviceStatus[] = ["online", "sleeping", "ota", "offline"];

export type WakeReason = "power" | "hard" | "soft" | "wdt" | "deepsleep" | "other";
export const WAKE_REASONS: readonly WakeReason[] = ["power", "hard", "soft", "wdt", "deepsleep", "other"];

/** `<base>/<id>/state`, validated. Optional fields that were present but invalid are left out. */
/** v3: the rollback an ESP32 reports once, in its first state after the bootloader went back. */
export interface RolledBack {
  /** The job whose firmware booted but never confirmed itself. */
  job: string;
  /** That firmware's identity. */
  fw: string;
}

export interface DeviceState {
  /** 1: an agent that cannot verify signed commands; 2: one that verifies them; 3: one that also pulls (ESP32). */
  v: 1 | 2 | 3;
  /** v2: the highest command counter the device accepted. */
  seq?: number;
  /** v2: the ids of the command keys the device trusts. */
  keys?: string[];
  /** MD5 trailer of the running image, 32 lower-case hex digits: the firmware identity. */
  fw: string;
  /** The address the device reports for itself. */
  ip: string;
  /** os.uname().version */
  ver?: string;
  flash?: number;
  mem?: number;
  rssi?: number;
  wake?: WakeReason;
  /** Seconds until the next wake; 0 or absent: always on. */
  sleep?: number;
  vbat?: number;
  /** v3: the chip (`esp8266`, `esp32`, `esp32s3`, ...). */
  chip?: string;
  /** v3, ESP32: bytes of the app slot an update goes to; 0 when the board has no second app slot. */
  slot?: number;
  /** v3, ESP32: the label of the running partition (`ota_0`, `ota_1`, `factory`). */
  run?: string;
  /** v3: present once after a rollback. */
  rb?: RolledBack;
  /** v3: the app the board runs and what it can take (protocol/app-state.ts). */
  app?: AppState;
}

/** `<base>/<id>/cmd` (retained; an empty payload clears it). */
export interface OtaCommand {
  op: "ota";
  job: string;
  fw: string;
  size: number;
}

/**
 * `<base>/<id>/ack`: the answer to a command (`ready`), or (v3) a report of
 * a pull under way: progress (`got` of `total`, `done` at the end), or the
 * error that ended it.
 */
export type DeviceAck =
  | { job: string; ready: true; ip?: string; port: number; pull?: true }
  | { job: string; ready: false; error: string }
  | PullReport;

/**
 * v3: how a fetch by the device goes (`got` bytes of `total` written, `done`
 * when switched; an app's also `files` of `of` staged), or why it ended
 * (`error`; `final` when the release itself is refused and a new try cannot
 * help).
 */
export type PullReport =
  | {
      job: string;
      ready?: undefined;
      got: number;
      total: number;
      done: boolean;
      files?: number;
      of?: number;
    }
  | { job: string; ready?: undefined; error: string; final?: boolean };

/** Whether an ack is a pull's report rather than an answer to a command. */
export function isPullReport(ack: DeviceAck): ack is PullReport {
  return ack.ready === undefined;
}

/** The outcome of reading one device message: the value, or why it was refused. */
export type Parsed<T> = { ok: true; value: T; warnings: string[] } | { ok: false; reason: string };

export const OTA_DEFAULT_PORT = 8266;
const FW_PATTERN = /^[0-9a-fA-F]{32}$/;
const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const CHIP_PATTERN = /^[a-z0-9]{1,16}$/;
/** The most files an app report may count: an app release's limit (src/apps/app-manifest.ts). */
export const MAX_REPORT_FILES = 256;
const PARTITION_LABEL_PATTERN = /^[A-Za-z0-9_]{1,16}$/;
/** Largest image a pull report may count: 16 MiB, the largest ESP32 flash. */
export const MAX_PULL_BYTES = 16 * 1024 * 1024;

export function isDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id) && !RESERVED_DEVICE_IDS.has(id);
}

/** Why an id is not a device id, or undefined when it is one. */
export function deviceIdProblem(id: string): string | undefined {
  if (RESERVED_DEVICE_IDS.has(id))
    return `"${id}" is reserved for the server's own topics (<base>/${id}/...)`;
  if (!DEVICE_ID_PATTERN.test(id)) {
    return `"${shorten(id)}" is not a device id (1 to 64 of A-Z, a-z, 0-9, "_" and "-")`;
  }
  return undefined;
}

export function isFirmwareIdentity(value: unknown): value is string {
  return typeof value === "string" && FW_PATTERN.test(value);
}

export function isJobId(value: unknown): value is string {
  return typeof value === "string" && JOB_ID_PATTERN.test(value);
}

/** Cuts long untrusted text for log lines and messages. */
export function shorten(text: string, max = 80): string {
  const clean = Array.from(text, (c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? "?" : c)).join(
    "",
  );
  return clean.length > max ? `${clean.slice(0, max)}...(${clean.length} chars)` : clean;
}

function parseJsonObject(payload: Uint8Array, max: number, what: string): Parsed<Record<string, unknown>> {
  if (payload.length > max)
    return { ok: false, reason: `${what} of ${payload.length} bytes is larger than ${max}` };
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch (error) {
    return { ok: false, reason: `${what} is not JSON (${(error as Error).message})` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: `${what} is JSON but not an object` };
  }
  return { ok: true, value: value as Record<string, unknown>, warnings: [] };
}

function finite(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= min && value <= max;
}

/** Reads a state message. `v`, `fw` and `ip` must be valid; invalid optional fields are dropped with a warning. */
export function parseState(payload: Uint8Array): Parsed<DeviceState> {
  const json = parseJsonObject(payload, MAX_STATE_BYTES, "state");
  if (!json.ok) return json;
  const raw = json.value;
  if (!CONTRACT_VERSIONS.includes(raw.v as number)) {
    return {
      ok: false,
      reason: `state has contract version ${JSON.stringify(raw.v ?? null)}; this server reads versions ${CONTRACT_VERSIONS.slice(0, -1).join(", ")} and ${CONTRACT_VERSIONS.at(-1)}`,
    };
  }
  if (!isFirmwareIdentity(raw.fw)) return { ok: false, reason: 'state has no valid "fw" (32 hex digits)' };
  if (typeof raw.ip !== "string" || isIP(raw.ip) === 0) {
    return { ok: false, reason: 'state has no valid "ip" (an IPv4 or IPv6 address)' };
  }
  const state: DeviceState = { v: raw.v as 1 | 2 | 3, fw: raw.fw.toLowerCase(), ip: raw.ip };
  const warnings: string[] = [];
  const optional = <K extends keyof DeviceState>(key: K, valid: boolean, value: DeviceState[K]) => {
    if (raw[key] === undefined || raw[key] === null) return;
    if (valid) state[key] = value;
    else warnings.push(`"${key}" ${shorten(JSON.stringify(raw[key]), 40)} ignored`);
  };
  optional("ver", typeof raw.ver === "string" && raw.ver.length <= 160, raw.ver as string);
  optional("flash", Number.isSafeInteger(raw.flash) && finite(raw.flash, 0, 2 ** 31), raw.flash as number);
  optional("mem", Number.isSafeInteger(raw.mem) && finite(raw.mem, 0, 2 ** 31), raw.mem as number);
  optional("rssi", finite(raw.rssi, -200, 20), raw.rssi as number);
  optional("wake", WAKE_REASONS.includes(raw.wake as WakeReason), raw.wake as WakeReason);
  optional("sleep", finite(raw.sleep, 0, 366 * 24 * 3600), raw.sleep as number);
  optional("vbat", finite(raw.vbat, 0, 60), raw.vbat as number);
  if (state.v >= 2) {
    optional("seq", Number.isSafeInteger(raw.seq) && (raw.seq as number) >= 0, raw.seq as number);
    optional(
      "keys",
      Array.isArray(raw.keys) &&
        raw.keys.length <= 3 &&
        raw.keys.every((k) => typeof k === "string" && /^[0-9a-f]{8}$/.test(k)),
      raw.keys as string[],
    );
  }
  if (state.v === 3) {
    optional("chip", typeof raw.chip === "string" && CHIP_PATTERN.test(raw.chip), raw.chip as string);
    optional(
      "slot",
      Number.isSafeInteger(raw.slot) && finite(raw.slot, 0, MAX_PULL_BYTES),
      raw.slot as number,
    );
    optional("run", typeof raw.run === "string" && PARTITION_LABEL_PATTERN.test(raw.run), raw.run as string);
    const rb = raw.rb as Record<string, unknown> | undefined;
    const rbValid =
      typeof rb === "object" &&
      rb !== null &&
      !Array.isArray(rb) &&
      isJobId(rb.job) &&
      isFirmwareIdentity(rb.fw);
    optional(
      "rb",
      rbValid,
      rbValid ? { job: rb.job as string, fw: (rb.fw as string).toLowerCase() } : undefined,
    );
    if (raw.app !== undefined && raw.app !== null) {
      const app = parseAppState(raw.app, warnings);
      if (app) state.app = app;
    }
  }
  return { ok: true, value: state, warnings };
}

/** Reads a status message (`online`, `sleeping`, `ota`, `offline`). */
export function parseStatus(payload: Uint8Array): Parsed<DeviceStatus> {
  if (payload.length > MAX_STATUS_BYTES) {
    return { ok: false, reason: `status of ${payload.length} bytes is larger than ${MAX_STATUS_BYTES}` };
  }
  const text = Buffer.from(payload).toString("utf8").trim();
  if (!DEVICE_STATUSES.includes(text as DeviceStatus)) {
    return { ok: false, reason: `status "${shorten(text, 32)}" is not one of ${DEVICE_STATUSES.join(", ")}` };
  }
  return { ok: true, value: text as DeviceStatus, warnings: [] };
}

/** Reads an ack. A ready ack may leave out `ip` (the server then uses the state's) and `port` (8266). */
export function parseAck(payload: Uint8Array): Parsed<DeviceAck> {
  const json = parseJsonObject(payload, MAX_ACK_BYTES, "ack");
  if (!json.ok) return json;
  const raw = json.value;
  if (!isJobId(raw.job)) return { ok: false, reason: 'ack has no valid "job"' };
  if (raw.ready === undefined) return parsePullReport(raw.job, raw);
  if (raw.ready === false) {
    const error =
      typeof raw.error === "string" && raw.error.trim() !== ""
        ? shorten(raw.error.trim(), 200)
        : "no reason given";
    return { ok: true, value: { job: raw.job, ready: false, error }, warnings: [] };
  }
  if (raw.ready !== true) return { ok: false, reason: 'ack has no boolean "ready"' };
  let ip: string | undefined;
  if (raw.ip !== undefined && raw.ip !== null) {
    if (typeof raw.ip !== "string" || isIP(raw.ip) === 0)
      return { ok: false, reason: 'ack has an invalid "ip"' };
    ip = raw.ip;
  }
  let port = OTA_DEFAULT_PORT;
  if (raw.port !== undefined && raw.port !== null) {
    if (!Number.isInteger(raw.port) || !finite(raw.port, 1, 65535))
      return { ok: false, reason: 'ack has an invalid "port"' };
    port = raw.port as number;
  }
  const ack: DeviceAck =
    ip === undefined ? { job: raw.job, ready: true, port } : { job: raw.job, ready: true, ip, port };
  if (raw.pull === true) ack.pull = true;
  return { ok: true, value: ack, warnings: [] };
}

/** A v3 report without `ready`: `{job, got, total[, done: true]}` or `{job, error}`. */
function parsePullReport(job: string, raw: Record<string, unknown>): Parsed<DeviceAck> {
  if (raw.error !== undefined) {
    if (typeof raw.error !== "string" || raw.error.trim() === "")
      return { ok: false, reason: 'ack has an "error" that is not a text' };
    if (raw.final !== undefined && typeof raw.final !== "boolean")
      return { ok: false, reason: 'ack has a "final" that is not true or false' };
    const error = shorten(raw.error.trim(), 200);
    return {
      ok: true,
      value: raw.final === undefined ? { job, error } : { job, error, final: raw.final },
      warnings: [],
    };
  }
  const count = (v: unknown) => Number.isSafeInteger(v) && finite(v, 0, MAX_PULL_BYTES);
  if (!count(raw.got) || !count(raw.total) || (raw.got as number) > (raw.total as number)) {
    return {
      ok: false,
      reason: `ack has no boolean "ready" and is no pull report ("got" and "total" integers, 0 <= got <= total <= ${MAX_PULL_BYTES})`,
    };
  }
  if (raw.done !== undefined && typeof raw.done !== "boolean")
    return { ok: false, reason: 'ack has a "done" that is not true or false' };
  const value: PullReport = {
    job,
    got: raw.got as number,
    total: raw.total as number,
    done: raw.done === true,
  };
  if (raw.files !== undefined || raw.of !== undefined) {
    // An app's files: both or neither, 0 <= files <= of <= the most files a release holds.
    const files = (v: unknown) => Number.isSafeInteger(v) && finite(v, 0, MAX_REPORT_FILES);
    if (!files(raw.files) || !files(raw.of) || (raw.files as number) > (raw.of as number)) {
      return {
        ok: false,
        reason: `ack has "files" and "of" that are not integers with 0 <= files <= of <= ${MAX_REPORT_FILES}`,
      };
    }
    value.files = raw.files as number;
    value.of = raw.of as number;
  }
  return { ok: true, value, warnings: [] };
}
