import { deviceIdProblem, shorten } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import type { RolloutSelector } from "../storage/rollout-store.ts";
import { tagProblem } from "./device-tags.ts";

/** The groups a rollout gets when the request names none: a canary of one, then 10 %, then the rest. */
export const DEFAULT_GROUPS = "1,10%,rest";
export const DEFAULT_SUCCESS_THRESHOLD = 100;
export const DEFAULT_ERROR_THRESHOLD = 20;
/** The error threshold fires once this many devices of a group finished (or the whole group, if smaller). */
export const DEFAULT_MIN_EXECUTED = 5;
export const DEFAULT_TIMEOUT_S = 15 * 60;
export const DEFAULT_CONCURRENCY = 10;
export const MAX_TIMEOUT_S = 30 * 24 * 3600;
export const MAX_CONCURRENCY = 1000;
export const MAX_RETRIES = 20;
export const MAX_ROLLOUT_DEVICES = 100_000;
/** The latest time a JavaScript Date holds (year 275760). */
const MAX_DATE_MS = 8.64e15;

export type GroupSize =
  | { kind: "count"; count: number }
  | { kind: "percent"; percent: number }
  | { kind: "rest" };

export interface GroupInput {
  size: GroupSize;
  successThreshold?: number;
  errorThreshold?: number;
  minExecuted?: number;
  approve: boolean;
}

/** A `rollout/create` request, checked. */
export interface RolloutInput {
  firmware: string;
  selector: RolloutSelector;
  groups: GroupInput[];
  successThreshold: number;
  errorThreshold: number;
  minExecuted: number | undefined;
  retries: number | undefined;
  timeoutMs: number;
  concurrency: number;
  allowDowngrade: boolean;
  /** Replace the app of boards running an app of another name (otherwise they are left out). */
  replaceApp: boolean;
  onError: "pause" | "abort";
  /** ms since the epoch, or undefined for now. */
  startAt: number | undefined;
  name: string | null;
}

const NAME_PATTERN = /^[\p{L}\p{N}][\p{L}\p{N} ._+:@#/-]{0,63}$/u;

function threshold(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 100) {
    throw new RequestError(
      `${what} must be a percentage from 0 to 100, not ${shorten(JSON.stringify(value) ?? String(value))}.`,
    );
  }
  return value;
}

function integer(value: unknown, what: string, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RequestError(
      `${what} must be a whole number from ${min} to ${max}, not ${shorten(JSON.stringify(value) ?? String(value))}.`,
    );
  }
  return value;
}

function boolean(value: unknown, what: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new RequestError(`${what} must be true or false.`);
  return value;
}

function text(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new RequestError(`${what} must be a string.`);
  return value.trim();
}

/** "1" (devices), "10%" (of all), "rest". */
export function parseGroupSize(item: string): GroupSize {
  const t = item.trim().toLowerCase();
  if (t === "rest" || t === "the rest") return { kind: "rest" };
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (percent) {
    const p = Number(percent[1]);
    if (p <= 0 || p > 100) {
      throw new RequestError(`A group of ${item.trim()} is not possible: give a share from 1% to 100%.`);
    }
    return { kind: "percent", percent: p };
  }
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n < 1 || n > MAX_ROLLOUT_DEVICES) {
      throw new RequestError(`A group of ${t} devices is not possible: give at least 1.`);
    }
    return { kind: "count", count: n };
  }
  throw new RequestError(
    `"${shorten(item.trim())}" is not a group: give a number of devices (1), a share of them (10%) or "rest", for example "${DEFAULT_GROUPS}".`,
  );
}

/** The short form of groups: "1,10%,rest". */
export function parseGroupList(list: string): GroupInput[] {
  const items = list.split(",").filter((s) => s.trim() !== "");
  if (items.length === 0) throw new RequestError(`Give at least one group, for example "${DEFAULT_GROUPS}".`);
  return items.map((item) => ({ size: parseGroupSize(item), approve: false }));
}

function parseGroup(value: unknown, index: number): GroupInput {
  const where = `Group ${index + 1}`;
  if (typeof value === "string") return { size: parseGroupSize(value), approve: false };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RequestError(
      `${where} must be an object such as {"count":1} or {"percent":10} or {"rest":true}.`,
    );
  }
  const g = value as Record<string, unknown>;
  const kinds = ["count", "percent", "rest"].filter(
    (k) => g[k] !== undefined && g[k] !== null && g[k] !== false,
  );
  if (kinds.length !== 1) {
    throw new RequestError(
      `${where} needs exactly one of "count" (devices), "percent" (of all devices) or "rest": true${kinds.length > 1 ? `, not ${kinds.join(" and ")}` : ""}.`,
    );
  }
  let size: GroupSize;
  if (kinds[0] === "count") {
    size = { kind: "count", count: integer(g.count, `${where}'s count`, 1, MAX_ROLLOUT_DEVICES) as number };
  } else if (kinds[0] === "percent") {
    const p = g.percent;
    if (typeof p !== "number" || !Number.isFinite(p) || p <= 0 || p > 100) {
      throw new RequestError(`${where}'s percent must be a share above 0 and at most 100.`);
    }
    size = { kind: "percent", percent: p };
  } else {
    if (g.rest !== true) throw new RequestError(`${where}'s "rest" must be true.`);
    size = { kind: "rest" };
  }
  const out: GroupInput = { size, approve: boolean(g.approve, `${where}'s approve`) ?? false };
  const success = threshold(g.successThreshold, `${where}'s success threshold`);
  const error = threshold(g.errorThreshold, `${where}'s error threshold`);
  const min = integer(g.minExecuted, `${where}'s minimum executed`, 1, MAX_ROLLOUT_DEVICES);
  if (success !== undefined) out.successThreshold = success;
  if (error !== undefined) out.errorThreshold = error;
  if (min !== undefined) out.minExecuted = min;
  return out;
}

function parseSelector(request: Record<string, unknown>): RolloutSelector {
  const given = ["devices", "tag", "line"].filter((k) => request[k] !== undefined && request[k] !== null);
  if (given.length === 0) {
    throw new RequestError(
      'Say which devices the rollout is for: "devices" (a list of ids), "tag" (devices with that tag) or "line" (every device running a firmware of that name). The CLI takes --devices, --tag or --line.',
    );
  }
  if (given.length > 1) {
    throw new RequestError(`Give one selector, not ${given.join(" and ")}: "devices", "tag" or "line".`);
  }
  if (given[0] === "devices") {
    const list = request.devices;
    if (!Array.isArray(list) || list.some((d) => typeof d !== "string")) {
      throw new RequestError('"devices" must be a list of device ids.');
    }
    const ids = [...new Set((list as string[]).map((d) => d.trim()).filter((d) => d !== ""))];
    if (ids.length === 0) throw new RequestError("The device list is empty: name at least one device.");
    if (ids.length > MAX_ROLLOUT_DEVICES) {
      throw new RequestError(`A rollout takes at most ${MAX_ROLLOUT_DEVICES} devices.`);
    }
    for (const id of ids) {
      const problem = deviceIdProblem(id);
      if (problem) throw new RequestError(`Cannot select devices: ${problem}.`);
    }
    return { kind: "devices", devices: ids };
  }
  if (given[0] === "tag") {
    const tag = text(request.tag, '"tag"') ?? "";
    if (tag === "") throw new RequestError("The tag is empty: name the tag the devices carry.");
    const problem = tagProblem(tag);
    if (problem) throw new RequestError(`Cannot select by tag: ${problem}.`);
    return { kind: "tag", tag };
  }
  const line = text(request.line, '"line"') ?? "";
  if (line === "")
    throw new RequestError("The firmware line is empty: name it (the firmware's name, e.g. sensor).");
  return { kind: "line", line };
}

function parseStartAt(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  // A Date holds at most 8.64e15 ms: later times cannot be shown or compared as dates.
  if (typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= MAX_DATE_MS) return value;
  if (typeof value === "string") {
    const at = Date.parse(value);
    if (!Number.isNaN(at)) return at;
  }
  throw new RequestError(
    `"startAt" must be a time: milliseconds since the epoch or ISO 8601 such as 2030-01-31T22:00:00Z, not ${shorten(JSON.stringify(value) ?? "")}.`,
  );
}

/** Checks a `rollout/create` request; every refusal says what was wrong and what to give instead. */
export function parseRolloutRequest(request: Record<string, unknown>): RolloutInput {
  const firmware = text(request.firmware, '"firmware"') ?? "";
  if (firmware === "") {
    throw new RequestError(
      'The request needs "firmware": a firmware from the store (identity, name@version or name). `mpota firmware list` shows them.',
    );
  }
  const selector = parseSelector(request);
  let groups: GroupInput[];
  if (request.groups === undefined || request.groups === null) groups = parseGroupList(DEFAULT_GROUPS);
  else if (typeof request.groups === "string") groups = parseGroupList(request.groups);
  else if (Array.isArray(request.groups)) {
    if (request.groups.length === 0)
      throw new RequestError(`Give at least one group, for example "${DEFAULT_GROUPS}".`);
    groups = request.groups.map(parseGroup);
  } else
    throw new RequestError(`"groups" must be a list of groups or a short form such as "${DEFAULT_GROUPS}".`);
  const restAt = groups.findIndex((g) => g.size.kind === "rest");
  if (restAt >= 0 && restAt < groups.length - 1) {
    throw new RequestError(
      `"rest" takes every remaining device, so it must be the last group (it is group ${restAt + 1} of ${groups.length}).`,
    );
  }
  const onError = request.onError ?? "pause";
  if (onError !== "pause" && onError !== "abort") {
    throw new RequestError('"onError" must be "pause" or "abort".');
  }
  const timeout = request.timeout;
  if (
    timeout !== undefined &&
    timeout !== null &&
    (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 1 || timeout > MAX_TIMEOUT_S)
  ) {
    throw new RequestError(`"timeout" must be seconds from 1 to ${MAX_TIMEOUT_S} (30 days).`);
  }
  const name = text(request.name, '"name"');
  if (name !== undefined && name !== "" && !NAME_PATTERN.test(name)) {
    throw new RequestError(
      "A rollout's name is 1 to 64 letters, digits, spaces and ._+:@#/- starting with a letter or digit.",
    );
  }
  return {
    firmware,
    selector,
    groups,
    successThreshold:
      threshold(request.successThreshold, "The success threshold") ?? DEFAULT_SUCCESS_THRESHOLD,
    errorThreshold: threshold(request.errorThreshold, "The error threshold") ?? DEFAULT_ERROR_THRESHOLD,
    minExecuted: integer(request.minExecuted, "The minimum executed", 1, MAX_ROLLOUT_DEVICES),
    retries: integer(request.retries, '"retries"', 0, MAX_RETRIES),
    timeoutMs: Math.round(((timeout as number | undefined) ?? DEFAULT_TIMEOUT_S) * 1000),
    concurrency: integer(request.concurrency, '"concurrency"', 1, MAX_CONCURRENCY) ?? DEFAULT_CONCURRENCY,
    allowDowngrade: boolean(request.allowDowngrade, '"allowDowngrade"') ?? false,
    replaceApp: boolean(request.replaceApp, '"replaceApp"') ?? false,
    onError,
    startAt: parseStartAt(request.startAt),
    name: name === undefined || name === "" ? null : name,
  };
}
