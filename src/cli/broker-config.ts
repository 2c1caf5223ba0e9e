import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { FileError } from "../errors.ts";
import { DEFAULT_BASE_TOPIC } from "../server/api/topics.ts";
import { DEFAULT_HA_PREFIX } from "../server/homeassistant/homeassistant.ts";
import { ensureAdminToken } from "../server/http/admin-token.ts";
import { hashSecret } from "../server/mqtt/credentials.ts";
import {
  checkMosquittoSettings,
  confLines,
  MOSQUITTO_MARKER,
  type MosquittoListener,
  mosquittoConfig,
} from "../server/mqtt/mosquitto-config.ts";
import { ensureMqttServerSecret } from "../server/mqtt/mqtt-server-secret.ts";
import { ADMIN_USERNAME, SERVER_USERNAME } from "../server/mqtt/principals.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import { openStorage } from "../server/storage/open-storage.ts";
import { dbOption, dbWaitOption } from "./db.ts";
import type { CliIo } from "./io.ts";
import { parseIntegerOption } from "./key-options.ts";
import { AtomicFile } from "./write-file.ts";

export interface BrokerConfigOptions {
  data: string;
  /** PostgreSQL URL (--db, MPOTA_DB); unset: SQLite in `data`. */
  db?: string;
  dbWait?: number;
  out: string;
  base: string;
  haPrefix: string;
  devicePort: number;
  /** Unset: every address. */
  deviceHost?: string;
  serverPort: number;
  serverHost: string;
  /** Replace files in --out that mpota did not write. */
  force?: boolean;
}

export const DEFAULT_DEVICE_PORT = 1883;
export const DEFAULT_SERVER_PORT = 1884;
export const DEFAULT_SERVER_HOST = "127.0.0.1";

/** The files in --out, by what they hold. */
export const MOSQUITTO_FILES = {
  devicePasswords: "mpota-devices.passwd",
  serverPasswords: "mpota-server.passwd",
  acl: "mpota.acl",
  conf: "mpota.conf",
} as const;

type FileKey = keyof typeof MOSQUITTO_FILES;

/** What is at a target now: nothing, a file this command wrote (its first line says so), or something else. */
function ownerOf(path: string): { kind: "absent" } | { kind: "ours" | "foreign"; gid: number } {
  let gid: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new FileError(`${path} is a folder; move it away or choose another --out.`);
    gid = st.gid;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    throw error;
  }
  const head = Buffer.alloc(MOSQUITTO_MARKER.length);
  try {
    const fd = openSync(path, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return { kind: "foreign", gid };
  }
  return { kind: head.toString("utf8") === MOSQUITTO_MARKER ? "ours" : "foreign", gid };
}

/**
 * Writes `text` to `target` through a temp file renamed into place, mode
 * 0640, with the group of the file it replaces (so the group Mosquitto reads
 * it through survives every run).
 */
async function writeMosquittoFile(
  target: string,
  text: string,
  replace: boolean,
  gid: number | undefined,
): Promise<void> {
  const file = await AtomicFile.open(target, { force: replace, mode: 0o640, what: "Mosquitto file" });
  try {
    await file.write(Buffer.from(text, "utf8"));
    chmodSync(file.tempPath, 0o640);
    if (gid !== undefined && statSync(file.tempPath).gid !== gid) {
      try {
        chownSync(file.tempPath, -1, gid);
      } catch (error) {
        throw new FileError(
          `Cannot give the new ${target} the group of the file it replaces (group id ${gid}), so Mosquitto might not be able to read it: ${(error as Error).message}. Run this command as root or as a member of that group.`,
        );
      }
    }
    await file.commit();
  } catch (error) {
    await file.abort();
    throw error;
  }
}

/** Quotes a word for a POSIX shell when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The URL the server and the CLI reach the server listener at (a wildcard address means this machine). */
function serverUrl(l: MosquittoListener): string {
  const host = l.host === undefined || l.host === "0.0.0.0" || l.host === "::" ? "127.0.0.1" : l.host;
  return `mqtt://${host.includes(":") ? `[${host}]` : host}:${l.port}`;
}

/** `mpota broker-config mosquitto`: Mosquitto's password, ACL and configuration files for the registry's devices. */
export async function brokerConfigMosquittoCommand(options: BrokerConfigOptions, io: CliIo): Promise<void> {
  const out = resolve(options.out);
  const targets = Object.fromEntries(
    Object.entries(MOSQUITTO_FILES).map(([key, name]) => [key, join(out, name)]),
  ) as Record<FileKey, string>;
  const listeners = {
    device: {
      port: options.devicePort,
      ...(options.deviceHost !== undefined ? { host: options.deviceHost } : {}),
    },
    server: { port: options.serverPort, host: options.serverHost },
  };
  // Checked before anything is read or written: the options, then what is in the way.
  checkMosquittoSettings({ base: options.base, haPrefix: options.haPrefix, paths: targets, listeners });
  const owners = Object.fromEntries(
    Object.entries(targets).map(([key, path]) => [key, ownerOf(path)]),
  ) as Record<FileKey, ReturnType<typeof ownerOf>>;
  const foreign = (Object.keys(owners) as FileKey[]).filter((k) => owners[k].kind === "foreign");
  if (foreign.length > 0 && options.force !== true) {
    throw new FileError(
      `${foreign.map((k) => targets[k]).join(", ")} ${foreign.length === 1 ? "exists and was" : "exist and were"} not written by \`mpota broker-config mosquitto\`; mpota does not overwrite ${foreign.length === 1 ? "it" : "them"}. Choose another --out folder, or pass --force to replace ${foreign.length === 1 ? "it" : "them"}.`,
    );
  }

  const storage = await openStorage({
    db: options.db,
    dataDir: options.data,
    ...(options.dbWait !== undefined ? { startRetryMs: options.dbWait * 1000 } : {}),
  });
  let credentials: Array<{ deviceId: string; hash: string }>;
  try {
    credentials = await storage.credentials.list();
  } finally {
    await storage.close();
  }
  const admin = ensureAdminToken(options.data);
  const server = ensureMqttServerSecret(options.data);
  const files = mosquittoConfig({
    base: options.base,
    haPrefix: options.haPrefix,
    server: { username: SERVER_USERNAME, hash: hashSecret(server.secret) },
    admin: { username: ADMIN_USERNAME, hash: hashSecret(admin.token) },
    devices: credentials.map((c) => ({ id: c.deviceId, hash: c.hash })),
    paths: targets,
    listeners,
  });

  try {
    mkdirSync(out, { recursive: true, mode: 0o750 });
  } catch (error) {
    throw new FileError(`Cannot create the folder ${out}: ${(error as Error).message}`);
  }
  // Password and ACL files first: a configuration never names a file that is not there yet.
  for (const key of ["devicePasswords", "serverPasswords", "acl", "conf"] as const) {
    const owner = owners[key];
    await writeMosquittoFile(
      targets[key],
      files[key],
      owner.kind !== "absent",
      owner.kind === "absent" ? undefined : owner.gid,
    );
  }

  const n = credentials.length;
  const serveLine = [
    "mpota serve",
    `--mqtt ${serverUrl(listeners.server)}`,
    `--mqtt-username ${SERVER_USERNAME}`,
    `--mqtt-password-file ${shellWord(server.path)}`,
    `--data ${shellWord(resolve(options.data))}`,
    ...(options.db ? ['--db "$MPOTA_DB"'] : []),
    ...(options.base !== DEFAULT_BASE_TOPIC ? [`--base ${shellWord(options.base)}`] : []),
  ].join(" ");
  const cliLine = [
    "mpota devices",
    `--mqtt ${serverUrl(listeners.server)}`,
    `--mqtt-username ${ADMIN_USERNAME}`,
    `--mqtt-password-file ${shellWord(admin.path)}`,
    ...(options.base !== DEFAULT_BASE_TOPIC ? [`--base ${shellWord(options.base)}`] : []),
  ].join(" ");
  const lines = [
    `Wrote Mosquitto's files for ${n} device${n === 1 ? "" : "s"} (base topic ${options.base}) to ${out}:`,
    ...(
      [
        ["devicePasswords", "the devices' credentials (hashes only)"],
        ["serverPasswords", `${SERVER_USERNAME} and ${ADMIN_USERNAME} (hashes only)`],
        ["acl", "who may publish and read what"],
        ["conf", "the settings below"],
      ] as const
    ).map(([key, what]) => `  ${MOSQUITTO_FILES[key].padEnd(22)}${what}`),
    `The server's broker password is in ${server.path} (mode 0600${server.created ? ", created now" : ""}); ${ADMIN_USERNAME}'s is the admin token (${admin.path}${admin.created ? ", created now" : ""}).`,
    ...(n === 0
      ? ["No device has a credential yet: add devices with `mpota devices add <id>`, then run this again."]
      : []),
    "",
    "mosquitto.conf needs these lines before any other security setting (on Debian, link the file instead:",
    `sudo ln -s ${targets.conf} /etc/mosquitto/conf.d/mpota.conf). Mosquitto's user must be able to read the`,
    `files: sudo chgrp mosquitto ${out}/mpota* (mpota keeps a file's group when it writes it again), or make`,
    `the folder with sudo install -d -o "$USER" -g mosquitto -m 2750 ${out} before the first run:`,
    ...confLines(files.conf).map((l) => `  ${l}`),
    "Then restart Mosquitto once (new listeners): sudo systemctl restart mosquitto",
    "",
    "Run the server on the server listener (the password stays out of ps):",
    `  ${serveLine}`,
    ...(options.db ? ["  (MPOTA_DB: the database URL you gave with --db.)"] : []),
    `The CLI and tools (Home Assistant) log in there as ${ADMIN_USERNAME} with the admin token, e.g.:`,
    `  ${cliLine}`,
    `Devices connect to port ${listeners.device.port} with their own id and secret (the mpota_config.py \`mpota devices add\` wrote).`,
    "",
    "Run this command again after `mpota devices add` or any other change to a device's credential, and after",
    "`mpota token rotate`; then reload Mosquitto (sudo systemctl reload mosquitto, or kill -HUP its pid). A reload",
    "re-reads the password and ACL files, disconnects clients whose credential is gone or changed, and keeps",
    "the others connected.",
  ];
  io.out(`${lines.join("\n")}\n`);
}

export function registerBrokerConfigCommand(program: Command, io: CliIo): void {
  const brokerConfig = program
    .command("broker-config")
    .description("Write an external broker's configuration for mpota's devices, server and tools.");
  brokerConfig
    .command("mosquitto")
    .description(
      "Write Mosquitto 2.0 password, ACL and configuration files for the registry's devices, the server and the admin.",
    )
    .requiredOption("--out <dir>", "folder for the files (created if missing), e.g. /etc/mosquitto/mpota")
    .option("--data <dir>", "the server's data directory (registry, admin token)", DEFAULT_DATA_DIR)
    .addOption(dbOption())
    .addOption(dbWaitOption())
    .option("--base <topic>", "base topic of devices and server", DEFAULT_BASE_TOPIC)
    .option("--ha-prefix <topic>", "Home Assistant's discovery prefix", DEFAULT_HA_PREFIX)
    .option(
      "--device-port <port>",
      `port of the devices' listener (default ${DEFAULT_DEVICE_PORT})`,
      parseIntegerOption("--device-port"),
      DEFAULT_DEVICE_PORT,
    )
    .option("--device-host <address>", "address the devices' listener binds (default: every address)")
    .option(
      "--server-port <port>",
      `port of the listener for mpota serve, the CLI and tools (default ${DEFAULT_SERVER_PORT})`,
      parseIntegerOption("--server-port"),
      DEFAULT_SERVER_PORT,
    )
    .option(
      "--server-host <address>",
      `address that listener binds (default ${DEFAULT_SERVER_HOST}; 0.0.0.0 when tools on other machines use it)`,
      DEFAULT_SERVER_HOST,
    )
    .option("--force", "replace files in --out that mpota did not write")
    .addHelpText(
      "after",
      `
Files (mode 0640): ${MOSQUITTO_FILES.devicePasswords}, ${MOSQUITTO_FILES.serverPasswords}, ${MOSQUITTO_FILES.acl}, ${MOSQUITTO_FILES.conf}.
Only hashes go into them: device secrets are never stored, the admin token and the server's
broker password (<data>/mqtt-server-secret, created if missing) are hashed afresh.
Devices use their own listener, where Mosquitto replaces every client id with the user name,
so no client can take a device's id; the server and tools use the other one. See docs/mosquitto.md.
Exit codes: 0 written, 2 bad option, 3 a file in the way (or unwritable), 24/25 database
unusable or newer than this mpota, 48 a stored credential Mosquitto must not get.`,
    )
    .action((options: BrokerConfigOptions) => brokerConfigMosquittoCommand(options, io));
}
