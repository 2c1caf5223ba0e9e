import { MpotaError, UsageError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";
import { deviceIdProblem } from "../../protocol/mqtt-contract.ts";
import { checkBaseTopic } from "../api/topics.ts";
import { ADMIN_USERNAME, RESERVED_ID_PREFIX, SERVER_USERNAME } from "./principals.ts";

/**
 * The files that make Mosquitto 2.0 enforce mpota's principals and ACL
 * (docs/security.md, docs/mosquitto.md): two password files, one ACL file
 * and a configuration snippet. Pure: the caller reads the registry and
 * writes the files.
 *
 * How Mosquitto 2.0's `acl_file` decides (src/security_default.c), which the
 * ACL below is built around:
 * - a client's own `user` lines first: `deny` lines before all others (a
 *   matching deny refuses reading *and* writing), then the first line that
 *   matches the topic and grants the access;
 * - then the `pattern` lines, which apply to every user (`%u` is the user
 *   name, `%c` the client id), again deny lines first;
 * - nothing matched: refused.
 * - Subscriptions are always accepted; reading is checked for every message
 *   delivered, retained ones included. A last will is checked as a publish
 *   when it is sent. A refused publish is dropped silently (MQTT 3.1.1) or
 *   answered with "not authorized" (MQTT 5, QoS 1 and 2).
 *
 * So a device's "publish anything under its id except cmd, read only cmd"
 * needs both kinds: `topic read <base>/<id>/cmd` in its own lines, and the
 * patterns `deny <base>/%u/cmd/#` and `write <base>/%u/+/#`, which a read of
 * its own cmd never reaches.
 *
 * Client ids: on the devices' listener Mosquitto replaces every client id
 * with the user name (`use_username_as_clientid`), so a client with device
 * B's credential cannot take device A's id and throw A off. The server and
 * tools need ids of their own (several at once), so they connect on a second
 * listener whose password file holds only `mpota-server` and `mpota-admin`.
 */

/** First line of every file mpota writes here: what `broker-config` recognises as its own output. */
export const MOSQUITTO_MARKER = "# Written by `mpota broker-config mosquitto`";

/** Mosquitto 2's PBKDF2-SHA512 line as it reads it: 12-byte salt, 64-byte hash. */
const MOSQUITTO_HASH = /^\$7\$[1-9]\d{0,6}\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/;
/** What a base topic or the Home Assistant prefix may be (no wildcards, no `%`, no spaces). */
const PREFIX_PATTERN = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;

export interface MosquittoUser {
  username: string;
  /** `$7$...` as made by credentials.ts `hashSecret` or `mosquitto_passwd`. */
  hash: string;
}

export interface MosquittoListener {
  port: number;
  /** Address to bind; undefined: every address. */
  host?: string;
}

export interface MosquittoConfigInput {
  base: string;
  haPrefix: string;
  server: MosquittoUser;
  admin: MosquittoUser;
  devices: ReadonlyArray<{ id: string; hash: string }>;
  /** Where the files will be, as Mosquitto should open them (absolute paths). */
  paths: { devicePasswords: string; serverPasswords: string; acl: string };
  listeners: { device: MosquittoListener; server: MosquittoListener };
}

export interface MosquittoFiles {
  /** `password_file` of the devices' listener: one line per device. */
  devicePasswords: string;
  /** `password_file` of the server's and tools' listener: mpota-server and mpota-admin. */
  serverPasswords: string;
  /** `acl_file` of both listeners. */
  acl: string;
  /** The mosquitto.conf lines: per-listener settings, both listeners. */
  conf: string;
}

/** A credential in the registry cannot be written for Mosquitto. */
export class BrokerConfigError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.brokerConfig.code;
}

function checkPrefix(value: string, option: string): void {
  if (!PREFIX_PATTERN.test(value)) {
    throw new UsageError(
      `"${value}" cannot be the ${option}: use one or more levels of letters, digits, "_" and "-" separated by "/".`,
    );
  }
}

function checkHash(hash: string, who: string): void {
  if (!MOSQUITTO_HASH.test(hash)) {
    throw new BrokerConfigError(
      `The stored credential of ${who} is not a hash Mosquitto 2 can check ($7$<iterations>$<12-byte salt>$<64-byte hash>, base64). Give ${who} a new credential (for a device: \`mpota devices rotate\`), then run this command again.`,
    );
  }
}

/** The settings' part of the input, checked before any credential is read. */
export type MosquittoSettings = Pick<MosquittoConfigInput, "base" | "haPrefix" | "paths" | "listeners">;

/** Throws a UsageError for settings Mosquitto or the ACL cannot take. */
export function checkMosquittoSettings(input: MosquittoSettings): void {
  checkBaseTopic(input.base);
  checkPrefix(input.haPrefix, "Home Assistant prefix (--ha-prefix)");
  if (input.haPrefix === input.base || input.haPrefix.startsWith(`${input.base}/`)) {
    throw new UsageError(
      `The Home Assistant prefix ${input.haPrefix} lies inside the base topic ${input.base}: tools may publish ${input.haPrefix}/status, which could then be a device's topic. Use a prefix outside ${input.base}/ (Home Assistant's default is homeassistant).`,
    );
  }
  for (const [name, path] of Object.entries(input.paths)) {
    if (/\s/.test(path) || path === "") {
      throw new UsageError(
        `Mosquitto cannot read a file name with spaces in its configuration (${name}: "${path}"): choose an --out folder without spaces.`,
      );
    }
  }
  for (const [name, l] of Object.entries(input.listeners)) {
    if (!Number.isInteger(l.port) || l.port < 1 || l.port > 65535) {
      throw new UsageError(`The ${name} listener's port must be between 1 and 65535.`);
    }
    if (l.host !== undefined && !/^[A-Za-z0-9.:_-]+$/.test(l.host)) {
      throw new UsageError(`"${l.host}" is not an address the ${name} listener can bind.`);
    }
  }
  const { device, server } = input.listeners;
  if (device.port === server.port) {
    throw new UsageError(
      `The devices' listener and the server's and tools' listener need two different ports (both are ${device.port}).`,
    );
  }
}

function checkInput(input: MosquittoConfigInput): void {
  checkMosquittoSettings(input);
  if (input.server.username !== SERVER_USERNAME || input.admin.username !== ADMIN_USERNAME) {
    throw new UsageError(`The server's user must be ${SERVER_USERNAME} and the admin's ${ADMIN_USERNAME}.`);
  }
  checkHash(input.server.hash, SERVER_USERNAME);
  checkHash(input.admin.hash, ADMIN_USERNAME);
  const seen = new Set<string>();
  for (const d of input.devices) {
    const problem =
      deviceIdProblem(d.id) ??
      (d.id.startsWith(RESERVED_ID_PREFIX)
        ? `"${d.id}" starts with ${RESERVED_ID_PREFIX}, which is reserved for the server and tools`
        : undefined);
    if (problem) {
      throw new BrokerConfigError(
        `The registry holds a credential Mosquitto must not get: ${problem}. Remove that device's credential, then run this command again.`,
      );
    }
    if (seen.has(d.id)) throw new BrokerConfigError(`The device ${d.id} appears twice in the registry.`);
    seen.add(d.id);
    checkHash(d.hash, `the device ${d.id}`);
  }
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function passwordFile(what: string, users: ReadonlyArray<MosquittoUser>): string {
  const lines = [
    `${MOSQUITTO_MARKER}: ${what}.`,
    "# mpota replaces this file on every run: do not edit it.",
    ...users.map((u) => `${u.username}:${u.hash}`),
  ];
  return `${lines.join("\n")}\n`;
}

function aclFile(input: MosquittoConfigInput, devices: ReadonlyArray<{ id: string }>): string {
  const b = input.base;
  const lines = [
    `${MOSQUITTO_MARKER}: the ACL of base topic ${b} and Home Assistant prefix ${input.haPrefix}.`,
    "# mpota replaces this file on every run: do not edit it.",
    "# Mosquitto checks a client's own user lines first (deny lines before the others), then the pattern",
    "# lines, which apply to every user (deny lines first); anything not granted is refused.",
    "",
    "# The server: everything.",
    `user ${SERVER_USERNAME}`,
    "topic readwrite #",
    "",
    "# People and tools (CLI, scripts, Home Assistant): read everything; publish bridge requests, Home",
    "# Assistant's install commands and birth message. Never a device's topics or the server's. The deny",
    "# line takes back what the device patterns below would give this user name.",
    `user ${ADMIN_USERNAME}`,
    `topic deny ${b}/${ADMIN_USERNAME}/#`,
    "topic read #",
    `topic write ${b}/bridge/request/#`,
    `topic write ${b}/bridge/homeassistant/+/install`,
    `topic write ${b}/bridge/homeassistant/+/app/install`,
    `topic write ${input.haPrefix}/status`,
    "",
    "# Devices (user name = device id): read their own command topic, nothing else.",
  ];
  for (const d of devices) lines.push(`user ${d.id}`, `topic read ${b}/${d.id}/cmd`);
  lines.push(
    "",
    "# Devices publish their own topics (state, status and last will, ack, telemetry), never a cmd.",
    "# Device ids never start with mpota- nor equal bridge, so these lines give the server and the",
    "# tools nothing beyond their own lines above.",
    `pattern deny ${b}/%u/cmd/#`,
    `pattern write ${b}/%u/+/#`,
  );
  return `${lines.join("\n")}\n`;
}

function listenerLine(l: MosquittoListener): string {
  return `listener ${l.port}${l.host !== undefined ? ` ${l.host}` : ""}`;
}

function confFile(input: MosquittoConfigInput): string {
  const { paths, listeners } = input;
  const lines = [
    `${MOSQUITTO_MARKER}: Mosquitto 2.0 settings for mpota.`,
    "# mpota replaces this file on every run: do not edit it.",
    "# per_listener_settings must come before every other security setting of the whole configuration.",
    "per_listener_settings true",
    "# A retained message is delivered only while its publisher may still publish it: a removed device's",
    "# state, or a command left behind by a client without the right, is not handed out.",
    "check_retain_source true",
    "",
    "# Devices: their own credential; the client id is replaced by the user name (the device id), so no",
    "# client can connect as another device and throw it off.",
    listenerLine(listeners.device),
    "allow_anonymous false",
    "use_username_as_clientid true",
    `password_file ${paths.devicePasswords}`,
    `acl_file ${paths.acl}`,
    "",
    `# The mpota server (${SERVER_USERNAME}) and the CLI and tools (${ADMIN_USERNAME}): any client id, so`,
    "# several servers and tools can be connected at once. Devices cannot log in here.",
    listenerLine(listeners.server),
    "allow_anonymous false",
    `password_file ${paths.serverPasswords}`,
    `acl_file ${paths.acl}`,
  ];
  return `${lines.join("\n")}\n`;
}

/** The password files, ACL file and configuration for `input`; throws on anything Mosquitto must not get. */
export function mosquittoConfig(input: MosquittoConfigInput): MosquittoFiles {
  checkInput(input);
  const devices = [...input.devices].sort(byId);
  return {
    devicePasswords: passwordFile(
      `the devices (${devices.length}), for the devices' listener`,
      devices.map((d) => ({ username: d.id, hash: d.hash })),
    ),
    serverPasswords: passwordFile("the server and the tools, for their listener", [
      input.server,
      input.admin,
    ]),
    acl: aclFile(input, devices),
    conf: confFile(input),
  };
}

/** The configuration lines without comments and blank lines (what the CLI prints). */
export function confLines(conf: string): string[] {
  return conf.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
}
