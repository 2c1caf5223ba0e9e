import { constants, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import {
  CommandKeyError,
  commandKeyId,
  commandPublicKey,
  modulusHexProblem,
  rsaFacts,
} from "./command-key-facts.ts";

/**
 * Signed device commands (MQTT device contract v2; v3 adds `pull`).
 *
 * The server signs every command it publishes on `<base>/<id>/cmd` with its
 * command key (RSA, e = 65537, RSASSA-PKCS1-v1_5 with SHA-256); the device
 * agent checks the signature in pure MicroPython before it acts. The signed
 * bytes are the fields in a fixed order, one per line (UTF-8, "\n" between
 * fields, no trailing newline):
 *
 *     mpota-cmd/2          mpota-cmd/2
 *     <dev>                <dev>
 *     <seq>                <seq>
 *     ota                  keys
 *     <job>                <modulus hex>,<modulus hex>...
 *     <fw>
 *     <size>
 *     <ver>
 *     <down>
 *
 * A `pull` (v3) is signed under the header `mpota-cmd/3` with the `ota`
 * fields and then `<sha>` and `<url>` (docs/mqtt.md, "Version 3"); an `app`
 * (v3) under the same header as `<dev> <seq> app <job> <name> <ver> <down>
 * <sha> <size> <url>` (docs/mqtt.md, "Version 3: apps").
 *
 * so `openssl dgst -sha256 -verify pub.pem -signature sig.bin message.txt`
 * checks a command too. Every field has a rule ({@link validateCommandFields});
 * no field can hold a newline or a comma, so the lines cannot be shifted.
 *
 * Typical use on the server:
 *
 * ```ts
 * const key = loadCommandKey(dataDir);                  // src/server/trust/command-key.ts
 * const cmd = signCommand({ op: "ota", dev, seq, job, fw, size, ver, down: 0 }, key.privateKey);
 * publish(`${base}/${dev}/cmd`, encodeCommand(cmd), { retain: true, qos: 1 });
 * ```
 */

/** The contract version carried in `v` of `ota` and `keys` commands. */
export const COMMAND_VERSION = 2;
/** The contract version of a `pull` command (an ESP32 fetching its image: contract v3). */
export const PULL_COMMAND_VERSION = 3;
/** The first line of every signed `ota` or `keys` message. */
export const SIGNED_HEADER = "mpota-cmd/2";
/** The first line of a signed `pull` message: a v2 signature can never be read as one. */
export const PULL_SIGNED_HEADER = "mpota-cmd/3";
/** Where a `pull` command says to fetch the image: http(s), no whitespace or comma, at most 240 after the scheme. */
export const PULL_URL_PATTERN = /^https?:\/\/[^\s,]{1,240}$/;
/** `seq` is an integer 1..2^53-1 (exact in JSON, in JavaScript and on the device). */
export const MAX_COMMAND_SEQ = Number.MAX_SAFE_INTEGER;
/** A device ignores a `seq` more than this above the highest it accepted ("from the future"). */
export const SEQ_FUTURE_WINDOW = 100_000;
/** A `keys` command names 1..3 moduli; the device then trusts exactly these. */
export const MAX_COMMAND_KEYS = 3;
/** A command's fields break the contract's rules: the server refuses to sign it. */
export class CommandFieldError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.commandField.code;
}

/** A command does not verify: the device would ignore it. The message says why. */
export class CommandSignatureError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.commandSignature.code;
}

/** Puts a device into OTA mode for the firmware `fw` (the v1 fields `op`, `job`, `fw`, `size` unchanged). */
export interface OtaCommandFields {
  op: "ota";
  /** The device the command is for: `[A-Za-z0-9_-]{1,64}`. */
  dev: string;
  /** 1..2^53-1, larger than every seq the device accepted before. */
  seq: number;
  /** `[A-Za-z0-9_-]{1,64}` */
  job: string;
  /** The target image's MD5 trailer: 32 lowercase hex digits. */
  fw: string;
  /** Image size in bytes, an integer >= 0. */
  size: number;
  /** The target firmware's version: `[A-Za-z0-9._+-]{1,32}`. */
  ver: string;
  /** 1: the owner allowed a downgrade; 0: the device refuses a version older than it accepted. */
  down: 0 | 1;
}

/** Replaces the keys the device trusts (its `CMD_KEYS`) with 1..3 moduli. */
export interface KeysCommandFields {
  op: "keys";
  dev: string;
  seq: number;
  /** Moduli as lowercase hex, big-endian, without a leading zero byte. */
  keys: string[];
}

/**
 * Contract v3: an ESP32 fetches the image at `url` itself, writes it into
 * its other app slot and checks its SHA-256 against `sha` before set_boot.
 * `fw` is the first 32 hex digits of the app's ELF SHA-256.
 */
export interface PullCommandFields extends Omit<OtaCommandFields, "op"> {
  op: "pull";
  /** SHA-256 of the whole image file, 64 lowercase hex digits. */
  sha: string;
  /** `^https?://[^\s,]{1,240}$`: the server's device route for this image. */
  url: string;
}

/**
 * Contract v3: a board fetches the app release whose signed manifest has
 * SHA-256 `sha` (`size` bytes) from `<url>/manifest`, and each file it lacks
 * from `<url>/file/<file sha>`, stages them and switches (device/mpota_stage.py).
 */
export interface AppCommandFields {
  op: "app";
  dev: string;
  seq: number;
  job: string;
  /** The app's name: `[a-z][a-z0-9_-]{0,31}`, as in its manifest. */
  name: string;
  /** Its version: 1 to 4 numbers joined by dots, as in its manifest. */
  ver: string;
  /** 1: the owner allowed a lower version than the board runs. */
  down: 0 | 1;
  /** SHA-256 of the whole signed manifest: the release's identity. */
  sha: string;
  /** The manifest's size in bytes (1 .. 64 KiB + one signature line). */
  size: number;
  /** `^https?://[^\s,]{1,240}$`: the server's device route of this release, without `/manifest`. */
  url: string;
}

/**
 * What a v3 command adds to `ota`'s fields for a device that fetches the
 * release itself: an ESP32 image's `pull`, an app's `app`.
 */
export type FetchCommand =
  | Pick<PullCommandFields, "op" | "sha" | "url">
  | Pick<AppCommandFields, "op" | "name" | "ver" | "sha" | "size" | "url">;

export type CommandFields = OtaCommandFields | KeysCommandFields | PullCommandFields | AppCommandFields;

interface Signature {
  v: typeof COMMAND_VERSION;
  /** {@link commandKeyId} of the signing key's modulus. */
  kid: string;
  /** The signature, base64 (standard alphabet, padded); as many bytes as the modulus. */
  sig: string;
}

export type SignedOtaCommand = { v: typeof COMMAND_VERSION } & OtaCommandFields & Omit<Signature, "v">;
export type SignedKeysCommand = { v: typeof COMMAND_VERSION } & KeysCommandFields & Omit<Signature, "v">;
export type SignedPullCommand = { v: typeof PULL_COMMAND_VERSION } & PullCommandFields & Omit<Signature, "v">;
export type SignedAppCommand = { v: typeof PULL_COMMAND_VERSION } & AppCommandFields & Omit<Signature, "v">;
/** The JSON object published on `<base>/<id>/cmd`. */
export type SignedCommand = SignedOtaCommand | SignedKeysCommand | SignedPullCommand | SignedAppCommand;

const DEVICE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;
const FW = /^[0-9a-f]{32}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const APP_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
const APP_VERSION = /^(0|[1-9]\d{0,8})(\.(0|[1-9]\d{0,8})){0,3}$/;
/** The largest app manifest: 64 KiB of lines and the signature line (src/apps/app-manifest.ts). */
export const MAX_APP_MANIFEST_BYTES = 64 * 1024 + 720;
/** The ops v3 added: their `v` is 3 and their header `mpota-cmd/3`. */
const V3_OPS: ReadonlySet<unknown> = new Set(["pull", "app"]);
/** The versions a signed command can carry (the agent checks the same). */
export const COMMAND_VERSION_PATTERN = /^[A-Za-z0-9._+-]{1,32}$/;
const VERSION = COMMAND_VERSION_PATTERN;
const KID = /^[0-9a-f]{8}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

type Fields = Record<string, unknown>;

/**
 * A field's value as a message shows it: JSON, cut short. A command may come
 * from anywhere, so its values may be objects (String() gives "[object
 * Object]", or throws for `{"toString":1}`) or nested too deep to print.
 */
function shown(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null || ["number", "boolean", "bigint"].includes(typeof value)) return String(value);
  let text: string;
  try {
    text = JSON.stringify(typeof value === "string" ? value.slice(0, 80) : value) ?? typeof value;
  } catch {
    text = `a ${typeof value} that cannot be shown`;
  }
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

function fieldError(field: string, value: unknown, rule: string): CommandFieldError {
  return new CommandFieldError(
    `Command field ${field} is ${shown(value)}; it must be ${rule}. The device would ignore such a command, so it is not signed.`,
  );
}

function text(c: Fields, field: string, pattern: RegExp, rule: string): string {
  const value = c[field];
  if (typeof value !== "string" || !pattern.test(value)) throw fieldError(field, value, rule);
  return value;
}

function integer(c: Fields, field: string, min: number, max: number, rule: string): number {
  const value = c[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw fieldError(field, value, rule);
  }
  return value;
}

/**
 * Checks every field rule of the contract and returns the fields alone, in
 * the contract's order. Throws {@link CommandFieldError} naming the field.
 */
export function validateCommandFields(input: unknown): CommandFields {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new CommandFieldError("A command must be an object with op, dev, seq and the fields of its op.");
  }
  const c = input as Fields;
  const op = c.op;
  if (op !== "ota" && op !== "keys" && op !== "pull" && op !== "app")
    throw fieldError("op", op, '"ota", "keys", "pull" or "app"');
  const dev = text(c, "dev", DEVICE_ID, "a device id: 1 to 64 of A-Z a-z 0-9 _ -");
  if (dev === "bridge" || dev.startsWith("mpota-")) {
    throw fieldError("dev", dev, 'a device id (the id "bridge" and ids starting "mpota-" are reserved)');
  }
  const seq = integer(c, "seq", 1, MAX_COMMAND_SEQ, "an integer from 1 to 2^53-1");
  if (op === "keys") {
    const keys = c.keys;
    if (!Array.isArray(keys)) throw fieldError("keys", keys, `a list of 1 to ${MAX_COMMAND_KEYS} moduli`);
    if (keys.length < 1 || keys.length > MAX_COMMAND_KEYS) {
      throw new CommandFieldError(
        `Command field keys has ${keys.length} moduli; it must have 1 to ${MAX_COMMAND_KEYS}. The device would ignore such a command, so it is not signed.`,
      );
    }
    keys.forEach((key, i) => {
      const problem = modulusHexProblem(key);
      if (problem) throw fieldError(`keys[${i}]`, key, `a modulus in ${problem}`);
    });
    return { op, dev, seq, keys: [...(keys as string[])] };
  }
  const job = text(c, "job", JOB_ID, "a job id: 1 to 64 of A-Z a-z 0-9 _ -");
  if (op === "app") return appFields(c, dev, seq, job);
  const fw = text(c, "fw", FW, "32 lowercase hex digits (the image's identity)");
  const size = integer(c, "size", 0, MAX_COMMAND_SEQ, "an integer >= 0 (bytes)");
  const ver = text(c, "ver", VERSION, "a version: 1 to 32 of A-Z a-z 0-9 . _ + -");
  const down = c.down;
  if (down !== 0 && down !== 1) throw fieldError("down", down, "0 or 1");
  if (op === "ota") return { op, dev, seq, job, fw, size, ver, down };
  const sha = text(c, "sha", SHA256, "64 lowercase hex digits (the image's SHA-256)");
  return { op, dev, seq, job, fw, size, ver, down, sha, url: urlField(c) };
}

function urlField(c: Fields): string {
  return text(
    c,
    "url",
    PULL_URL_PATTERN,
    "an http:// or https:// URL of at most 240 characters after the scheme, without spaces or commas",
  );
}

function appFields(c: Fields, dev: string, seq: number, job: string): AppCommandFields {
  const name = text(c, "name", APP_NAME, "an app name: a-z, then up to 31 of a-z 0-9 _ -");
  const ver = text(c, "ver", APP_VERSION, "an app version: 1 to 4 numbers joined by dots (1.4.0)");
  const down = c.down;
  if (down !== 0 && down !== 1) throw fieldError("down", down, "0 or 1");
  const sha = text(c, "sha", SHA256, "64 lowercase hex digits (the manifest's SHA-256)");
  const size = integer(
    c,
    "size",
    1,
    MAX_APP_MANIFEST_BYTES,
    `an integer from 1 to ${MAX_APP_MANIFEST_BYTES} (the manifest's bytes)`,
  );
  return { op: "app", dev, seq, job, name, ver, down, sha, size, url: urlField(c) };
}

/** The `v` a command of this op carries: 3 for `pull` and `app`, 2 for the rest. */
export function commandVersion(op: CommandFields["op"]): 2 | 3 {
  return V3_OPS.has(op) ? PULL_COMMAND_VERSION : COMMAND_VERSION;
}

/** The exact bytes that are signed (UTF-8, "\n" between fields, no trailing newline). Validates first. */
export function signedBytes(fields: CommandFields): Buffer {
  const f = validateCommandFields(fields);
  if (f.op === "pull") {
    const lines = [PULL_SIGNED_HEADER, f.dev, f.seq, f.op, f.job, f.fw, f.size, f.ver, f.down, f.sha, f.url];
    return Buffer.from(lines.join("\n"), "utf8");
  }
  if (f.op === "app") {
    const lines = [
      PULL_SIGNED_HEADER,
      f.dev,
      f.seq,
      f.op,
      f.job,
      f.name,
      f.ver,
      f.down,
      f.sha,
      f.size,
      f.url,
    ];
    return Buffer.from(lines.join("\n"), "utf8");
  }
  const tail = f.op === "keys" ? [f.keys.join(",")] : [f.job, f.fw, f.size, f.ver, f.down];
  return Buffer.from([SIGNED_HEADER, f.dev, f.seq, f.op, ...tail].join("\n"), "utf8");
}

/**
 * Signs a command: validates the fields ({@link CommandFieldError}), signs
 * their bytes with RSASSA-PKCS1-v1_5 / SHA-256, and returns the object to
 * publish (fields in the contract's order, then `kid` and `sig`).
 * Deterministic: the same fields and key give the same signature.
 */
export function signCommand(fields: OtaCommandFields, privateKey: KeyObject): SignedOtaCommand;
export function signCommand(fields: KeysCommandFields, privateKey: KeyObject): SignedKeysCommand;
export function signCommand(fields: PullCommandFields, privateKey: KeyObject): SignedPullCommand;
export function signCommand(fields: AppCommandFields, privateKey: KeyObject): SignedAppCommand;
export function signCommand(fields: CommandFields, privateKey: KeyObject): SignedCommand;
export function signCommand(fields: CommandFields, privateKey: KeyObject): SignedCommand {
  if (privateKey.type !== "private") {
    throw new CommandKeyError("Signing a command needs the private command key, not a public one.");
  }
  const { modulus } = rsaFacts(privateKey, "The signing key");
  const f = validateCommandFields(fields);
  const sig = sign("sha256", signedBytes(f), { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  return {
    v: commandVersion(f.op),
    ...f,
    kid: commandKeyId(modulus),
    sig: sig.toString("base64"),
  } as SignedCommand;
}

/** The payload to publish: the command as JSON, fields in the contract's order. */
export function encodeCommand(command: SignedCommand): string {
  return JSON.stringify(command);
}

/** A key a command may be signed with: a KeyObject (public or private) or a modulus in hex. */
export type CommandVerifyKey = KeyObject | string;

/**
 * Checks a command as the device does (rules 1-3 of the contract: fields,
 * key id, signature) and returns its fields and the `kid` that signed it.
 * Throws {@link CommandSignatureError} saying why the device would ignore it.
 * It does not know the device's counter or versions (rules 4-6).
 */
export function verifyCommand(
  command: unknown,
  keys: CommandVerifyKey | readonly CommandVerifyKey[],
): CommandFields & { kid: string } {
  if (typeof command === "string") {
    try {
      command = JSON.parse(command);
    } catch {
      throw new CommandSignatureError("The command is not JSON.");
    }
  }
  if (typeof command !== "object" || command === null || Array.isArray(command)) {
    throw new CommandSignatureError("The command is not a JSON object.");
  }
  const c = command as Fields;
  const v = V3_OPS.has(c.op) ? PULL_COMMAND_VERSION : COMMAND_VERSION;
  if (c.v !== v) throw new CommandSignatureError(`The command's v is ${shown(c.v)}, not ${v}.`);
  if (c.sig === undefined) throw new CommandSignatureError("The command is not signed (no sig).");
  let fields: CommandFields;
  try {
    fields = validateCommandFields(c);
  } catch (error) {
    throw new CommandSignatureError((error as Error).message.replace(/ The device would.*$/, ""), {
      cause: error,
    });
  }
  const kid = c.kid;
  if (typeof kid !== "string" || !KID.test(kid)) {
    throw new CommandSignatureError("The command's kid is not 8 lowercase hex digits.");
  }
  const candidates = (Array.isArray(keys) ? keys : [keys]) as readonly CommandVerifyKey[];
  const known = candidates.map((k) => {
    const publicKey = typeof k === "string" ? commandPublicKey(k) : k;
    return { publicKey, modulus: rsaFacts(publicKey, "A verification key").modulus };
  });
  const key = known.find((k) => commandKeyId(k.modulus) === kid);
  if (!key)
    throw new CommandSignatureError(`The command is signed by key ${kid}, which is not trusted here.`);
  const sig = c.sig;
  if (typeof sig !== "string" || !BASE64.test(sig)) {
    throw new CommandSignatureError("The command's sig is not base64.");
  }
  const signature = Buffer.from(sig, "base64");
  // As the device: only the canonical encoding (no stray bits in the last character).
  if (signature.toString("base64") !== sig)
    throw new CommandSignatureError("The command's sig is not base64.");
  if (signature.length !== key.modulus.length) {
    throw new CommandSignatureError(
      `The command's sig has ${signature.length} bytes; a signature by key ${kid} has ${key.modulus.length}.`,
    );
  }
  const publicKey = key.publicKey.type === "private" ? createPublicKey(key.publicKey) : key.publicKey;
  const ok = verify(
    "sha256",
    signedBytes(fields),
    { key: publicKey, padding: constants.RSA_PKCS1_PADDING },
    signature,
  );
  if (!ok) throw new CommandSignatureError(`The command's signature does not verify with key ${kid}.`);
  return { ...fields, kid };
}
