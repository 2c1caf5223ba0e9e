import { createHash } from "node:crypto";
import { AppReleaseError } from "./app-errors.ts";
import { appPathClash, appPathProblem, compareAppPaths } from "./app-path.ts";
import { archName, BOARD_ARCHS, checkBoardsRunArch, MPY_VERSION, type MpyNeed } from "./mpy-header.ts";

/**
 * The manifest of an app release: ASCII lines a board can read one at a
 * time (no JSON parser, no whole manifest in RAM), in one canonical form,
 * so the same release always has the same bytes and the same signature.
 *
 *     mpota-app/1
 *     name thermostat
 *     version 1.4.0
 *     boards esp32 esp8266 rp2
 *     mpy 6                        ("mpy -": no .mpy files; "mpy 6 10 3": native xtensawin code, sub-version 3)
 *     files 2 5130                 (count, total bytes)
 *     <sha256 hex> <size> <path>   (one line per file, in compareAppPaths order)
 *     sig <kid> <base64>           (RSASSA-PKCS1-v1_5, SHA-256, over every line above, newlines included)
 *
 * Every line ends in "\n". The release's identity is the SHA-256 of the
 * whole file; a board reports it as the manifest it runs.
 */

export const MANIFEST_HEADER = "mpota-app/1";
/** Most files in a release. */
export const MAX_APP_FILES = 256;
/** Largest file in a release. */
export const MAX_APP_FILE_BYTES = 1024 * 1024;
/** Most bytes of all files together (the largest ESP8266 filesystem is about 3 MiB, two slots need twice). */
export const MAX_APP_BYTES = 4 * 1024 * 1024;
/** Largest manifest file (256 files of the longest path fit with room). */
export const MAX_MANIFEST_BYTES = 64 * 1024;
/** Longest manifest line a board reads (the signature line of a 4096-bit key). */
export const MAX_MANIFEST_LINE = 720;
/** Board kinds, as `sys.platform` names them. */
export const APP_BOARDS: readonly string[] = Object.keys(BOARD_ARCHS).sort();

const NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Numbers only, so a board orders versions without a table of rules: 1 to 4 parts, no leading zeros. */
const VERSION = /^(0|[1-9]\d{0,8})(\.(0|[1-9]\d{0,8})){0,3}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const KID = /^[0-9a-f]{8}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface AppFileEntry {
  path: string;
  size: number;
  /** SHA-256 of the file's bytes, lowercase hex. */
  sha256: string;
}

export interface AppManifestFields {
  name: string;
  version: string;
  /** `sys.platform` names, sorted. */
  boards: string[];
  /** What its `.mpy` files need; undefined when it holds none. */
  mpy: MpyNeed | undefined;
  /** In manifest order. */
  files: AppFileEntry[];
}

export interface SignedAppManifest extends AppManifestFields {
  /** Key id of the signing key (as command keys: first 4 bytes of SHA-256 of the modulus). */
  kid: string;
  signature: Buffer;
  /** The signed lines. */
  body: Buffer;
  /** The whole manifest file. */
  bytes: Buffer;
  /** SHA-256 of the whole manifest file, hex: the release's identity. */
  id: string;
  /** Bytes of all files. */
  total: number;
}

export function checkAppName(name: string): string {
  if (!NAME.test(name)) {
    throw new AppReleaseError(
      `The app name "${name.slice(0, 40)}" is not allowed: use 1 to 32 of a-z 0-9 _ -, starting with a letter (e.g. thermostat).`,
    );
  }
  return name;
}

export function checkAppVersion(version: string): string {
  if (!VERSION.test(version)) {
    throw new AppReleaseError(
      `The app version "${version.slice(0, 40)}" is not allowed: use 1 to 4 numbers joined by dots, without leading zeros (e.g. 1.4.0). Boards compare versions number by number to refuse a downgrade.`,
    );
  }
  return version;
}

/** Negative when `a` is older than `b`: number by number, a missing number is 0 (1.4 equals 1.4.0). */
export function compareAppVersions(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** `--board esp32,rp2` as a sorted list without duplicates. */
export function parseAppBoards(list: string): string[] {
  const boards = [
    ...new Set(
      list
        .split(/[,\s]+/)
        .map((b) => b.trim().toLowerCase())
        .filter(Boolean),
    ),
  ].sort();
  const unknown = boards.filter((b) => !APP_BOARDS.includes(b));
  if (boards.length === 0 || unknown.length > 0) {
    throw new AppReleaseError(
      `${unknown.length > 0 ? `Unknown board kind ${unknown.map((b) => `"${b.slice(0, 20)}"`).join(", ")}` : "No board kind given"}: name one or more of ${APP_BOARDS.join(", ")} (as sys.platform names them), e.g. --board esp8266,esp32.`,
    );
  }
  return boards;
}

/** Checks every rule and returns the fields with the files in manifest order. */
export function validateManifestFields(fields: AppManifestFields): AppManifestFields {
  checkAppName(fields.name);
  checkAppVersion(fields.version);
  const boards = parseAppBoards(fields.boards.join(","));
  checkBoardsRunArch(boards, fields.mpy);
  const files = [...fields.files].sort((a, b) => compareAppPaths(a.path, b.path));
  if (files.length === 0) throw new AppReleaseError("The app has no files: add at least its main module.");
  if (files.length > MAX_APP_FILES) {
    throw new AppReleaseError(
      `The app has ${files.length} files; a release holds at most ${MAX_APP_FILES}. Leave out what the board does not need, or pack data files together.`,
    );
  }
  let total = 0;
  files.forEach((f, i) => {
    const problem = appPathProblem(f.path);
    if (problem)
      throw new AppReleaseError(
        `The app path ${JSON.stringify(f.path.slice(0, 120))} is refused: ${problem}.`,
      );
    if (!SHA256.test(f.sha256))
      throw new AppReleaseError(`The digest of ${f.path} is not 64 lowercase hex digits.`);
    if (!Number.isSafeInteger(f.size) || f.size < 0 || f.size > MAX_APP_FILE_BYTES) {
      throw new AppReleaseError(
        `${f.path} is ${f.size} bytes; an app file holds at most ${MAX_APP_FILE_BYTES} bytes (1 MiB).`,
      );
    }
    total += f.size;
    const before = files[i - 1];
    const clash = before === undefined ? undefined : appPathClash(before.path, f.path);
    if (clash) throw new AppReleaseError(`The app's files collide: ${clash}.`);
  });
  if (total > MAX_APP_BYTES) {
    throw new AppReleaseError(
      `The app's files hold ${total} bytes together; a release holds at most ${MAX_APP_BYTES} (4 MiB), and a board needs room for two copies.`,
    );
  }
  return { name: fields.name, version: fields.version, boards, mpy: fields.mpy, files };
}

function mpyLine(mpy: MpyNeed | undefined): string {
  if (mpy === undefined) return "mpy -";
  return mpy.arch === 0 ? `mpy ${mpy.version}` : `mpy ${mpy.version} ${mpy.arch} ${mpy.subVersion}`;
}

/** The signed lines, canonical. Validates first. */
export function manifestBody(fields: AppManifestFields): Buffer {
  const f = validateManifestFields(fields);
  const total = f.files.reduce((sum, file) => sum + file.size, 0);
  const lines = [
    MANIFEST_HEADER,
    `name ${f.name}`,
    `version ${f.version}`,
    `boards ${f.boards.join(" ")}`,
    mpyLine(f.mpy),
    `files ${f.files.length} ${total}`,
    ...f.files.map((file) => `${file.sha256} ${file.size} ${file.path}`),
  ];
  const body = Buffer.from(`${lines.join("\n")}\n`, "ascii");
  if (body.length > MAX_MANIFEST_BYTES) {
    throw new AppReleaseError(
      `The manifest would be ${body.length} bytes; the most a board takes is ${MAX_MANIFEST_BYTES}.`,
    );
  }
  return body;
}

function damaged(why: string): AppReleaseError {
  return new AppReleaseError(`The app manifest is damaged: ${why}.`);
}

function field(line: string | undefined, key: string): string {
  if (line === undefined || !line.startsWith(`${key} `)) throw damaged(`the line "${key} ..." is missing`);
  return line.slice(key.length + 1);
}

function parseMpy(value: string): MpyNeed | undefined {
  if (value === "-") return undefined;
  const m = /^(\d+)(?: (\d+) (\d))?$/.exec(value);
  if (!m || Number(m[1]) !== MPY_VERSION)
    throw damaged(`"mpy ${value.slice(0, 20)}" names no .mpy version releases take`);
  const arch = m[2] === undefined ? 0 : Number(m[2]);
  if (m[2] !== undefined && (arch === 0 || archName(arch).startsWith("architecture"))) {
    throw damaged(`"mpy ${value}" names no native architecture`);
  }
  return { version: MPY_VERSION, arch, subVersion: m[3] === undefined ? 0 : Number(m[3]) };
}

/**
 * Reads a manifest file: every line by its rule, and the body must be the
 * canonical encoding of what it says. Does not check the signature
 * (verifyAppManifest in app-signature.ts does).
 */
export function parseAppManifest(bytes: Buffer): SignedAppManifest {
  if (bytes.length > MAX_MANIFEST_BYTES + MAX_MANIFEST_LINE) {
    throw damaged(`it is ${bytes.length} bytes, more than any release has`);
  }
  const text = bytes.toString("latin1");
  if (!text.endsWith("\n")) throw damaged("it does not end with a newline (cut short?)");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== MANIFEST_HEADER) throw damaged(`its first line is not ${MANIFEST_HEADER}`);
  const name = checkAppName(field(lines[1], "name"));
  const version = checkAppVersion(field(lines[2], "version"));
  const boards = field(lines[3], "boards").split(" ");
  const mpy = parseMpy(field(lines[4], "mpy"));
  const counts = /^(\d{1,4}) (\d{1,8})$/.exec(field(lines[5], "files"));
  if (!counts) throw damaged('the line "files COUNT BYTES" is malformed');
  const count = Number(counts[1]);
  if (lines.length !== 6 + count + 1)
    throw damaged(`it says ${count} files and has ${lines.length - 7} file lines`);
  const files = lines.slice(6, 6 + count).map((line) => {
    const m = /^([0-9a-f]{64}) (\d{1,8}) (\S+)$/.exec(line);
    if (!m) throw damaged(`the file line "${line.slice(0, 80)}" is malformed`);
    return { sha256: m[1] as string, size: Number(m[2]), path: m[3] as string };
  });
  const sig = /^sig ([0-9a-f]{8}) (\S+)$/.exec(lines[6 + count] as string);
  if (!sig || !KID.test(sig[1] as string) || !BASE64.test(sig[2] as string)) {
    throw damaged("its last line is not the signature (sig KID BASE64)");
  }
  const fields = { name, version, boards, mpy, files };
  const body = manifestBody(fields);
  const signedLength = bytes.length - (lines[6 + count] as string).length - 1;
  if (!body.equals(bytes.subarray(0, signedLength))) {
    throw damaged("its lines are not in the canonical form (order, spacing or totals differ)");
  }
  const ordered = validateManifestFields(fields);
  return {
    ...ordered,
    kid: sig[1] as string,
    signature: Buffer.from(sig[2] as string, "base64"),
    body,
    bytes,
    id: createHash("sha256").update(bytes).digest("hex"),
    total: files.reduce((sum, f) => sum + f.size, 0),
  };
}
