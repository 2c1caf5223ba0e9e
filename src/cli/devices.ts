import type { Command } from "commander";
import { formatTable } from "../firmware/format.ts";
import type { DeviceDetail, DeviceView } from "../server/api.ts";
import { BridgeClient, DEFAULT_CLIENT_URL } from "../server/bridge-client.ts";
import type { CliIo } from "./io.ts";
import { addMqttOptions, type MqttCliOptions, mqttConnection } from "./serve.ts";

export interface BridgeCommandOptions extends MqttCliOptions {
  json?: boolean;
  timeout: number;
}

/** Adds the options of a command that asks the running server (broker, base topic, --timeout, --json). */
export function addBridgeOptions(command: Command): Command {
  return addMqttOptions(command, "client")
    .option("--timeout <seconds>", "how long to wait for the server's answer", (v: string) => Number(v), 5)
    .option("--json", "print the server's answer as JSON");
}

/** Connects to the server's bridge, runs `fn`, and disconnects. */
export async function withBridge<T>(
  options: BridgeCommandOptions,
  fn: (bridge: BridgeClient) => Promise<T>,
): Promise<T> {
  const timeoutMs = Number.isFinite(options.timeout) && options.timeout > 0 ? options.timeout * 1000 : 5000;
  const bridge = await BridgeClient.connect({
    connection: mqttConnection(options, options.mqtt ?? DEFAULT_CLIENT_URL),
    base: options.base,
    timeoutMs,
  });
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

function statusText(d: DeviceView, now: number): string {
  if (d.status === "sleeping" && d.nextWakeAt !== null) {
    return d.nextWakeAt >= now
      ? `sleeping, wakes ${relativeTime(d.nextWakeAt, now)}`
      : `sleeping, overdue ${relativeTime(d.nextWakeAt, now).replace(" ago", "")}`;
  }
  return d.status ?? "-";
}

export function devicesTable(devices: DeviceView[], now = Date.now()): string {
  if (devices.length === 0) {
    return "No devices yet. A device appears when its agent publishes <base>/<id>/state (see docs/mqtt.md).\n";
  }
  const rows = [["DEVICE", "STATUS", "FIRMWARE", "IP", "RSSI", "VBAT", "LAST SEEN", "JOB"]];
  for (const d of devices) {
    rows.push([
      d.id,
      statusText(d, now),
      firmwareText(d),
      d.ip ?? "-",
      d.rssi === null ? "-" : String(d.rssi),
      d.vbat === null ? "-" : d.vbat.toFixed(2),
      relativeTime(d.lastSeen, now),
      d.job ? `${d.job.id} ${d.job.state}` : "-",
    ]);
  }
  return formatTable(rows, { header: true });
}

export function deviceText(d: DeviceDetail, now = Date.now()): string {
  const lines = [
    `Device ${d.id}`,
    `  status     ${statusText(d, now)}${d.statusAt === null ? "" : ` (since ${relativeTime(d.statusAt, now)})`}`,
    `  firmware   ${firmwareText(d)}${d.fw ? `  ${d.fw}` : ""}`,
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
    const rows = [["JOB", "STATE", "FIRMWARE", "CREATED"]];
    for (const j of d.jobs)
      rows.push([j.id, j.state, `${j.firmware.name} ${j.firmware.version}`, relativeTime(j.createdAt, now)]);
    lines.push(formatTable(rows, { header: true, indent: "  " }).trimEnd());
  }
  return `${lines.join("\n")}\n`;
}

export function registerDevicesCommand(program: Command, io: CliIo): void {
  const devices = program
    .command("devices")
    .description("List the devices the running server knows (from their state messages), or show one.");
  addBridgeOptions(
    devices.command("list", { isDefault: true }).description("list the devices (the default)"),
  ).action(async (options: BridgeCommandOptions) => {
    const list = await withBridge(options, (bridge) => bridge.request("devices", {}));
    printAnswer(io, options.json, list, () => devicesTable(list));
  });
  addBridgeOptions(
    devices
      .command("show")
      .description("one device with its state history and jobs")
      .argument("<id>", "device id"),
  ).action(async (id: string, options: BridgeCommandOptions) => {
    const device = await withBridge(options, (bridge) => bridge.request("device", { id }));
    printAnswer(io, options.json, device, () => deviceText(device));
  });
}
