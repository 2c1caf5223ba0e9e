/**
 * Contract v3's `app` field of a device's state (docs/mqtt.md, "Version 3:
 * apps"): the app release the board runs, what its MicroPython loads, the
 * room for a new app, and once after a rollback why the new app was given up.
 * Kept apart from mqtt-contract.ts, which calls it, so neither file grows a
 * second concern.
 */

export interface AppRolledBack {
  /** The job whose app was given up by the loader. */
  job: string;
  /** The loader's reason (the error line of an app that raised, or "never confirmed"). */
  why: string;
}

export interface AppState {
  /** The installed app release; absent when the board runs no app yet (all three or none). */
  name?: string;
  ver?: string;
  /** SHA-256 of the installed manifest, 64 lowercase hex: the release's identity. */
  id?: string;
  /** `sys.platform`: esp8266, esp32, rp2. */
  board?: string;
  /** `sys.implementation._mpy`: the .mpy version in bits 0-7, sub-version in 8-9, native arch in 10-13. */
  mpy?: number;
  /** Bytes a new app may take: free blocks plus what the slot not running holds. */
  free?: number;
  /** Present once after the loader switched back to the previous app. */
  rb?: AppRolledBack;
}

const APP_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
const APP_VERSION = /^(0|[1-9]\d{0,8})(\.(0|[1-9]\d{0,8})){0,3}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const BOARD = /^[a-z0-9]{1,16}$/;
const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** A rollback reason is cut here, as ack errors are. */
export const MAX_APP_ROLLBACK_REASON = 200;
/** The largest room a board may report: 64 MiB (the largest filesystem of the boards supported, with margin). */
const MAX_APP_FREE = 64 * 1024 * 1024;

/**
 * Reads the `app` field; returns the valid parts and a warning per part
 * dropped (as the state's other optional fields are dropped). Undefined
 * when nothing in it is usable.
 */
export function parseAppState(raw: unknown, warnings: string[]): AppState | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    warnings.push('"app" is not an object: ignored');
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  const app: AppState = {};
  const drop = (what: string) => warnings.push(`"app.${what}" ignored`);
  if (r.name !== undefined || r.ver !== undefined || r.id !== undefined) {
    if (
      typeof r.name === "string" &&
      APP_NAME.test(r.name) &&
      typeof r.ver === "string" &&
      APP_VERSION.test(r.ver) &&
      typeof r.id === "string" &&
      SHA256.test(r.id)
    ) {
      app.name = r.name;
      app.ver = r.ver;
      app.id = r.id;
    } else drop("name/ver/id (they go together: an app name, a version such as 1.4.0, 64 hex digits)");
  }
  if (r.board !== undefined) {
    if (typeof r.board === "string" && BOARD.test(r.board)) app.board = r.board;
    else drop("board");
  }
  if (r.mpy !== undefined) {
    if (Number.isSafeInteger(r.mpy) && (r.mpy as number) >= 0 && (r.mpy as number) <= 0xffff)
      app.mpy = r.mpy as number;
    else drop("mpy");
  }
  if (r.free !== undefined) {
    if (Number.isSafeInteger(r.free) && (r.free as number) >= 0 && (r.free as number) <= MAX_APP_FREE)
      app.free = r.free as number;
    else drop("free");
  }
  if (r.rb !== undefined) {
    const rb = r.rb as Record<string, unknown> | null;
    if (
      typeof rb === "object" &&
      rb !== null &&
      !Array.isArray(rb) &&
      typeof rb.job === "string" &&
      JOB_ID.test(rb.job) &&
      typeof rb.why === "string"
    ) {
      // Control characters would break log lines and job texts; the reason is the device's words, cut.
      const why = [...rb.why]
        .map((c) => (c < " " || c === "\u007f" ? " " : c))
        .join("")
        .trim();
      app.rb = {
        job: rb.job,
        why: why.length > MAX_APP_ROLLBACK_REASON ? `${why.slice(0, MAX_APP_ROLLBACK_REASON)}...` : why,
      };
    } else drop("rb");
  }
  return Object.keys(app).length > 0 ? app : undefined;
}
