import { existsSync } from "node:fs";
import type { Command } from "commander";
import { Option } from "commander";
import { formatTable, sizeBrief } from "../firmware/format.ts";
import type { ProvisionedDevice } from "../server/api/admin-views.ts";
import type { DeviceDetail, DeviceView } from "../server/api/api.ts";
import { BridgeClient, DEFAULT_CLIENT_URL } from "../server/bridge/bridge-client.ts";
import { adminTokenPath, readToken } from "../server/http/admin-token.ts";
import { BrokerConnectError } from "../server/mqtt/mqtt-connect.ts";
import { ADMIN_USERNAME } from "../server/mqtt/principals.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import type { CliIo } from "./io.ts";
import { deviceFetches, phaseWord, RELEASE_CELL, releaseWords } from "./job-words.ts";
import { parseIntegerOption } from "./key-options.ts";
import { addMqttOptions, type MqttCliOptions, mqttConnection } from "./mqtt-options.ts";
import { DEFAULT_TABLE_WIDTH, fitTable, tableWidth } from "./table-fit.ts";
import { checkOutputFree, writeFileAtomic } from "./write-file.ts";

export interface BridgeCommandOptions extends MqttCliOptions {
  json?: boolean;
  timeout: number;
  /** The server's data directory, where the admin token is (the CLI's MQTT password). */
  data: string;
}

/** Adds the options of a command that asks the running server (broker, base topic, --timeout, --json). */
export function addBridgeOptions(command: Command): Command {
  return addMqttOptions(command, "client")
    .option("--timeout <seconds>", "how long to wait for the server's answer", (v: string) => Number(v), 5)
    .option("--json", "print the server's answer as JSON")
    .addOption(
      new Option(
        "--data <dir>",
        "the server's data directory: the CLI logs in to the broker as mpota-admin with the admin token there, unless --mqtt-username/--mqtt-password are given",
      )
        .env("MPOTA_DATA")
        .default(DEFAULT_DATA_DIR),
    );
}

/**
 * The broker options with the admin credential filled in: without
 * --mqtt-username and --mqtt-password, the CLI logs in as mpota-admin with
 * the token in the server's data directory (as `mpota token` finds it).
 */
export function withAdminCredential(options: BridgeCommandOptions): {
  options: BridgeCommandOptions;
  tokenFile?: string;
} {
  if (
    options.mqttUsername !== undefined ||
    options.mqttPassword !== undefined ||
    options.mqttPasswordFile !== undefined
  )
    return { options };
  const path = adminTokenPath(options.data ?? DEFAULT_DATA_DIR);
  if (!existsSync(path)) return { options, tokenFile: path };
  const token = readToken(path);
  return { options: { ...options, mqttUsername: ADMIN_USERNAME, mqttPassword: token }, tokenFile: path };
}

/** Connects to the server's bridge, runs `fn`, and disconnects. */
export async function withBridge<T>(
  options: BridgeCommandOptions,
  fn: (bridge: BridgeClient) => Promise<T>,
): Promise<T> {
  const timeoutMs = Number.isFinite(options.timeout) && options.timeout > 0 ? options.timeout * 1000 : 5000;
  const { options: withCredential, tokenFile } = withAdminCredential(options);
  let bridge: BridgeClient;
  try {
    bridge = await BridgeClient.connect({
      connection: mqttConnection(withCredential, options.mqtt ?? DEFAULT_CLIENT_URL),
      base: options.base,
      timeoutMs,
    });
  } catch (error) {
    if (
      error instanceof BrokerConnectError &&
      /refused the user name|did not authorize/.test(error.message)
    ) {
      const how =
        withCredential.mqttUsername === ADMIN_USERNAME && tokenFile
          ? `The CLI logged in as ${ADMIN_USERNAME} with the admin token from ${tokenFile}, and the broker refused it: that is not the token of the server on this broker (another data directory, or the token was rotated). Pass the server's data directory with --data DIR (or MPOTA_DATA).`
          : tokenFile
            ? `The CLI found no admin token at ${tokenFile}. Run it where \`mpota serve\` keeps its data, pass --data DIR (or MPOTA_DATA), or give --mqtt-username ${ADMIN_USERNAME} --mqtt-password TOKEN.`
            : "Check --mqtt-username and --mqtt-password.";
      throw new BrokerConnectError(`${error.message}\n${how}`);
    }
    throw error;
  }
  try {
    return await fn(bridge);
  } finally {
    await bridge.close();
  }
}

export function printJson(io: CliIo, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** Prints a server answer: as JSON with --json, else as the text people read. */
export function printAnswer<T>(io: CliIo, json: boolean | undefined, value: T, text: () => string): void {
  if (json) printJson(io, value);
  else io.out(text());
}

/** "12 s ago", "4 min ago", "in 3 h", or a date for anything older than a week. */
export function relativeTime(at: number | null, now = Date.now()): string {
  if (at === null) return "-";
  const delta = Math.round((at - now) / 1000);
  const abs = Math.abs(delta);
  const text =
    abs < 60
      ? `${abs} s`
      : abs < 3600
        ? `${Math.round(abs / 60)} min`
        : abs < 86400 * 2
          ? `${Math.round(abs / 3600)} h`
          : abs < 86400 * 7
            ? `${Math.round(abs / 86400)} d`
            : "";
  if (text === "") return new Date(at).toISOString().slice(0, 16).replace("T", " ");
  return delta <= 0 ? `${text} ago` : `in ${text}`;
}

function firmwareText(d: DeviceView): string {
  if (d.firmware) return `${d.firmware.name} ${d.firmware.version}`;
  return d.fw ? `${d.fw.slice(0, 8)} (unknown)` : "-";
}

/** The app a board reports: "-" when its agent reports none at all, "none" when it runs no app yet. */
function appText(d: DeviceView, width = Number.POSITIVE_INFINITY): string {
  if (!d.app) return "-"; // null, or absent from an older server's answer
  const app = d.app.name !== null ? `${d.app.name} ${d.app.version ?? "?"}` : "none";
  const text = d.app.rolledBack ? `${app} (rolled back)` : app;
  // A name and version may take 70 characters: a table cell is cut (`devices show` has it whole).
  return text.length > width ? `${text.slice(0, width - 3)}...` : text;
}

function appDetail(app: NonNullable<DeviceView["app"]>): string {
  const facts = [
    ...(app.board !== null ? [`${app.board} board`] : []),
    ...(app.free !== null ? [`${sizeBrief(app.free)} free`] : []),
  ];
  const release = app.id !== null ? `, release ${app.id.slice(0, 12)}` : "";
  const name = app.name !== null ? `${app.name} ${app.version ?? "?"}${release}` : "none";
  return `${name}${facts.length > 0 ? ` (${facts.join(", ")})` : ""}`;
}

function statusText(d: DeviceView, now: number): string {
  if (d.status === "sleeping" && d.nextWakeAt !== null) {
    return d.nextWakeAt >= now
      ? `sleeping, wakes ${relativeTime(d.nextWakeAt, now)}`
      : `sleeping, overdue ${relativeTime(d.nextWakeAt, now).replace(" ago", "")}`;
  }
  return d.status ?? "-";
}

export function devicesTable(devices: DeviceView[], now = Date.now(), width = DEFAULT_TABLE_WIDTH): string {
  if (devices.length === 0) {
    return "No devices yet. A device appears when its agent publishes <base>/<id>/state (see docs/mqtt.md).\n";
  }
  const rows = [["DEVICE", "STATUS", "FIRMWARE", "APP", "IP", "RSSI", "VBAT", "LAST SEEN", "JOB"]];
  for (const d of devices) {
    rows.push([
      d.id,
      statusText(d, now),
      firmwareText(d),
      appText(d, 32),
      d.ip ?? "-",
      d.rssi === null ? "-" : String(d.rssi),
      d.vbat === null ? "-" : d.vbat.toFixed(2),
      relativeTime(d.lastSeen, now),
      d.job ? `${d.job.id} ${phaseWord(d.job.state, deviceFetches(d.job))}` : "-",
    ]);
  }
  // Device ids, addresses and job ids stay whole; the status, the releases and the job's phase are cut.
  const fitted = fitTable(rows, width, [
    [1, "end"],
    [2, "keep-last-word"],
    [3, "keep-last-word"],
    [8, "keep-first-word"],
  ]);
  return formatTable(fitted, { header: true });
}

export function deviceText(d: DeviceDetail, now = Date.now()): string {
  const lines = [
    `Device ${d.id}`,
    `  status     ${statusText(d, now)}${d.statusAt === null ? "" : ` (since ${relativeTime(d.statusAt, now)})`}`,
    `  firmware   ${firmwareText(d)}${d.fw ? `  ${d.fw}` : ""}`,
    `  app        ${d.app ? appDetail(d.app) : "- (the agent reports no app)"}`,
    ...(d.app?.rolledBack ? [`  rollback   job ${d.app.rolledBack.job}: ${d.app.rolledBack.why}`] : []),
    `  version    ${d.ver ?? "-"}`,
    `  address    ${d.ip ?? "-"}`,
    `  rssi       ${d.rssi ?? "-"}   vbat ${d.vbat ?? "-"}   mem ${d.mem ?? "-"}   flash ${d.flash ?? "-"}`,
    `  sleep      ${d.sleep ? `${d.sleep} s` : "always on"}   last wake: ${d.wake ?? "-"}`,
    `  seen       first ${relativeTime(d.firstSeen, now)}, last ${relativeTime(d.lastSeen, now)}`,
  ];
  if (d.history.length > 0) {
    lines.push("", "State history (newest first):");
    const rows = [["WHEN", "FIRMWARE", "IP", "RSSI", "WAKE"]];
    for (const h of d.history) {
      rows.push([
        relativeTime(h.at, now),
        h.state.fw.slice(0, 8),
        h.state.ip,
        String(h.state.rssi ?? "-"),
        h.state.wake ?? "-",
      ]);
    }
    lines.push(formatTable(rows, { header: true, indent: "  " }).trimEnd());
  }
  if (d.jobs.length > 0) {
    lines.push("", "Jobs (newest first):");
    const rows = [["JOB", "STATE", "RELEASE", "CREATED"]];
    for (const j of d.jobs)
      rows.push([
        j.id,
        phaseWord(j.state, deviceFetches(j)),
        releaseWords(j.firmware, j, RELEASE_CELL),
        relativeTime(j.createdAt, now),
      ]);
    lines.push(formatTable(rows, { header: true, indent: "  " }).trimEnd());
  }
  return `${lines.join("\n")}\n`;
}

export function registerDevicesCommand(program: Command, io: CliIo): void {
  const devices = program
    .command("devices")
    .description("List the devices the running server knows (from their state messages), or show one.");
  const show = async (id: string, options: BridgeCommandOptions) => {
    const device = await withBridge(options, (bridge) => bridge.request("device", { id }));
    printAnswer(io, options.json, device, () => deviceText(device));
  };
  addBridgeOptions(
    devices
      .command("list", { isDefault: true })
      .description("list the devices (the default); with a device id, show that device")
      // `mpota devices sim-2` reads naturally as "show me sim-2": take it so.
      .argument("[id]", "a device id: the same as `mpota devices show <id>`"),
  ).action(async (id: string | undefined, options: BridgeCommandOptions) => {
    if (id !== undefined) return show(id, options);
    const list = await withBridge(options, (bridge) => bridge.request("devices", {}));
    printAnswer(io, options.json, list, () => devicesTable(list, Date.now(), tableWidth(io)));
  });
  addBridgeOptions(
    devices
      .command("show")
      .description("one device with its state history and jobs")
      .argument("<id>", "device id"),
  ).action(show);
  registerProvisioningCommands(devices, io);
}

interface ProvisionOptions extends BridgeCommandOptions {
  output?: string;
  force?: boolean;
  host?: string;
  port?: number;
}

/** Writes the device's mpota_config.py (mode 0600: it holds the credential) and says what to do with it. */
async function writeDeviceConfig(
  io: CliIo,
  options: ProvisionOptions,
  device: ProvisionedDevice,
  verb: string,
): Promise<void> {
  if (options.json) {
    printJson(io, device);
    return;
  }
  const target = options.output ?? `${device.device}.mpota_config.py`;
  await writeFileAtomic(target, device.config, { mode: 0o600, force: true });
  io.out(
    `${verb} ${device.device}: MQTT user ${device.username}, broker ${device.broker.host}:${device.broker.port}, command keys ${device.commandKeys.join(", ") || "(none)"}.\n` +
      `Wrote ${target} (mode 0600: it holds the device's secret, which the server keeps only as a salted hash).\n` +
      `Copy it to the board as mpota_config.py:\n  mpremote cp ${target} :mpota_config.py\n`,
  );
}

function provisionOptions(command: Command): Command {
  return addBridgeOptions(command)
    .option(
      "-o, --output <file>",
      "where to write the device's mpota_config.py (default <id>.mpota_config.py)",
    )
    .option("--force", "replace an existing output file")
    .option(
      "--host <host>",
      "the broker's address as the device reaches it (default: the server's LAN address)",
    )
    .option("--port <port>", "the broker's port as the device reaches it", parseIntegerOption("--port"));
}

function provisionRequest(
  id: string,
  options: ProvisionOptions,
): { id: string; host?: string; port?: number } {
  return {
    id,
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
  };
}

/** `mpota devices add|rotate|revoke|allow-unsigned`: device credentials. */
export function registerProvisioningCommands(devices: Command, io: CliIo): void {
  // add and rotate both hand out a new credential and write the device's mpota_config.py.
  const credentialCommand = (
    name: "add" | "rotate",
    description: string,
    idHelp: string,
    verb: string,
  ): void => {
    provisionOptions(devices.command(name).description(description).argument("<id>", idHelp)).action(
      async (id: string, options: ProvisionOptions) => {
        const target = options.output ?? `${id}.mpota_config.py`;
        if (!options.json) checkOutputFree(target, { force: options.force === true, what: "Device config" });
        const device = await withBridge(options, (bridge) =>
          bridge.request(`devices/${name}`, provisionRequest(id, options)),
        );
        await writeDeviceConfig(io, options, device, verb);
      },
    );
  };
  credentialCommand(
    "add",
    "provision a device: a credential of its own for the broker (only its salted hash is stored) and a ready mpota_config.py",
    "device id ([A-Za-z0-9_-]{1,64})",
    "Provisioned",
  );
  credentialCommand(
    "rotate",
    "give a provisioned device a new credential; the old one stops working at its next connection",
    "device id",
    "New credential for",
  );
  addBridgeOptions(
    devices
      .command("revoke")
      .description("remove a device's credential: it can no longer connect")
      .argument("<id>", "device id"),
  ).action(async (id: string, options: BridgeCommandOptions) => {
    const done = await withBridge(options, (bridge) => bridge.request("devices/revoke", { id }));
    printAnswer(io, options.json, done, () => `Revoked the credential of ${done.device}.\n`);
  });
  addBridgeOptions(
    devices
      .command("allow-unsigned")
      .description(
        "let the server send commands to a device whose agent cannot verify signed commands (an old agent); --off takes it back",
      )
      .argument("<id>", "device id")
      .option("--off", "no longer allow it"),
  ).action(async (id: string, options: BridgeCommandOptions & { off?: boolean }) => {
    const view = await withBridge(options, (bridge) =>
      bridge.request("devices/allow-unsigned", { id, allow: options.off !== true }),
    );
    printAnswer(io, options.json, view, () =>
      view.allowUnsigned
        ? `Commands to ${view.device} may go unsigned: anyone who can publish on its cmd topic can send it into OTA mode. Update its agent and take this back with --off.\n`
        : `Commands to ${view.device} must be signed again.\n`,
    );
  });
}
