import type { DeviceState, DeviceStatus } from "../../protocol/mqtt-contract.ts";
import type { AuditEntry, StoredVerdict } from "../storage/storage.ts";
import type { JobPhase } from "../storage/types.ts";
import type { CommandKeysView, CredentialView, ProvisionedDevice, StatusView } from "./admin-views.ts";
import { ROLLOUT_REQUEST_NAMES, type RolloutBridgeApi } from "./rollout-api.ts";

/**
 * The server's API for people and tools: request and response payloads of
 * `<base>/bridge/request/<name>` and `<base>/bridge/response/<name>`, and
 * the messages the server publishes by itself. Plain JSON shapes; the CLI's
 * `--json` output prints these `data` objects as they are.
 */

export interface FirmwareRef {
  id: string;
  name: string;
  version: string;
}

export interface DeviceView {
  id: string;
  /** online, sleeping, ota, offline (the device's last status message), or null. */
  status: DeviceStatus | null;
  statusAt: number | null;
  firstSeen: number;
  lastSeen: number;
  lastStateAt: number | null;
  /** For a sleepy device: when it should wake next (ms since the epoch). */
  nextWakeAt: number | null;
  /** The running firmware's identity (MD5 trailer). */
  fw: string | null;
  /** The store's name for `fw`, when the store has it. */
  firmware: FirmwareRef | null;
  /**
   * The MQTT contract version of the device's agent, from its last state: 1
   * cannot verify signed commands, 2 verifies them, 3 also pulls ESP32
   * images; null before any state.
   */
  v: 1 | 2 | 3 | null;
  /** The chip a v3 agent reports (`esp32`, `esp32s3`, `esp8266`), else null. */
  chip: string | null;
  ver: string | null;
  ip: string | null;
  rssi: number | null;
  vbat: number | null;
  mem: number | null;
  flash: number | null;
  wake: string | null;
  sleep: number | null;
  /**
   * The device's active job, if any; the bridge's `devices` answer adds how
   * its release travels, as a job's view says.
   */
  job: ({ id: string; state: JobPhase } & Pick<JobView, "delivery" | "fetchedByDevice">) | null;
  /**
   * The app a v3 agent reports (`state.app`): its release's name, version and
   * manifest SHA-256, the board kind, and once after a rollback the job and
   * the loader's reason; null when the device reports no app.
   */
  app: DeviceAppView | null;
}

export interface DeviceAppView {
  name: string | null;
  version: string | null;
  /** SHA-256 of the installed manifest (64 hex); its first 32 digits are the release's identity. */
  id: string | null;
  board: string | null;
  /** Bytes a new app may take on the device. */
  free: number | null;
  rolledBack: { job: string; why: string } | null;
}

export interface DeviceDetail extends DeviceView {
  history: Array<{ at: number; state: DeviceState }>;
  jobs: JobView[];
}

export interface FirmwareView extends FirmwareRef {
  size: number;
  notes: string | null;
  addedAt: number;
  micropython: string | null;
  build: string | null;
  /** Its kind of release ("esp8266-ota", "esp32-app"). */
  kind: string;
  /** The chip it is built for ("esp8266", "esp32", "esp32s3"): it goes only to devices of that chip. */
  target: string;
  /**
   * The chips (a device's `chip`) its kind serves: a device reporting
   * another is refused ("takes app updates only", for a Pico W given a
   * firmware). Null: any chip (an app release; its boards decide).
   */
  chips: string[] | null;
  checks: StoredVerdict[];
  /** Devices whose last state reports this firmware. */
  devices: number;
}

/** An app release (kind `app` of the release store) with what its manifest says. */
export interface AppReleaseView {
  /** The release store's identity: the first 32 hex digits of `sha256`. */
  id: string;
  /** SHA-256 of the signed manifest: what a device reports as its app's `id`. */
  sha256: string;
  name: string;
  version: string;
  files: number;
  bytes: number;
  boards: string[];
  mpy: { version: number; arch: number; subVersion: number } | null;
  /** The signing key's id. */
  kid: string;
  notes: string | null;
  addedAt: number;
  /** Devices whose last state reports this app. */
  devices: number;
}

export interface JobView {
  id: string;
  device: string;
  firmware: FirmwareRef & { size: number };
  state: JobPhase;
  attempt: number;
  maxAttempts: number;
  /** Of the last push: 0-100. */
  percent: number;
  bytes: number;
  total: number;
  /** Bytes per second of the last push. */
  rate: number;
  retransmits: number;
  /** An app's fetch: files staged of the release's (`bytes`/`total` are its bytes staged), as the progress topic says. */
  files?: number;
  of?: number;
  /** The address of the push (the one the device reported), "ip:port". */
  target: string | null;
  /**
   * How the release reaches the device ("udp-push", "esp32-pull", "app-pull"),
   * and whether the device fetches it itself (then `target` is only where its
   * ack came from, no address anything is sent to). Absent from older servers.
   */
  delivery?: string;
  fetchedByDevice?: boolean;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  /** When the server looks at the job next (retry, timeout), if scheduled. */
  dueAt: number | null;
}

export interface JobStepView {
  at: number;
  kind: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface JobDetail extends JobView {
  /** The job was asked for with `allowDowngrade` (it may install a firmware older than the device runs). */
  allowDowngrade: boolean;
  /** Present when the job was asked for with `replaceApp` and replaces this app of another name. */
  replacedApp?: { name: string; version: string };
  /** An app job's release as its manifest lists it (`firmware.size` is the manifest's own size). */
  app?: { files: number; bytes: number };
  steps: JobStepView[];
}

/** Published retained on `<base>/bridge/jobs/<job>` at every change and during a push. */
export interface JobProgressMessage {
  job: string;
  device: string;
  firmware: FirmwareRef;
  state: JobPhase;
  percent: number;
  bytes: number;
  total: number;
  rate: number;
  retransmits: number;
  /** An app's fetch, while it runs: files staged of the release's (`bytes`/`total` are its bytes staged). */
  files?: number;
  of?: number;
  attempt: number;
  maxAttempts: number;
  error: string | null;
  updatedAt: number;
}

/** Published retained on `<base>/bridge/state`; the server's last will sets it offline. */
export interface BridgeStateMessage {
  state: "online" | "offline";
}

/**
 * Published retained on `<base>/bridge/info` (as Zigbee2MQTT's bridge/info):
 * what the server is and how large the fleet is. Republished when it changes.
 */
export interface BridgeInfoMessage {
  version: string;
  base: string;
  storage: string;
  /** Bits of the signing key, or null when the server has none (ESP8266 pushes are refused). */
  keyBits: number | null;
  /** Devices known, and how many of them `<base>/bridge/devices` lists (it is bounded). */
  devices: { count: number; listed: number };
  /** Firmware images in the store. */
  firmware: number;
}

/**
 * One device in the retained `<base>/bridge/devices` list (as Zigbee2MQTT's
 * bridge/devices): its slow-changing facts only. Status, signal and battery
 * are on the device's own topics and in the `devices` request.
 */
export interface BridgeDeviceEntry {
  id: string;
  /** The running firmware's identity (MD5 trailer). */
  fw: string | null;
  /** The store's name for `fw`, when the store has it. */
  firmware: FirmwareRef | null;
  /** os.uname().version of the device's MicroPython. */
  ver: string | null;
  ip: string | null;
  /** Seconds between wakes of a sleepy device; null or 0: always on. */
  sleep: number | null;
  /** The agent's MQTT contract version (2 verifies signed commands, 3 pulls ESP32 images). */
  v: 1 | 2 | 3 | null;
  /** The chip a v3 agent reports, else null. */
  chip: string | null;
  firstSeen: number;
}

export interface ServerInfo {
  version: string;
  base: string;
  storage: string;
  /** Networks the server pushes to. */
  networks: string[];
  /** Bits of the signing key, or null when the server has none (ESP8266 pushes are refused). */
  keyBits: number | null;
  startedAt: number;
}

/** Every request name with its request and response payloads (rollouts: src/server/rollouts/rollout-api.ts). */
export interface BridgeApi extends RolloutBridgeApi {
  info: { request: Record<string, never>; response: ServerInfo };
  devices: { request: { limit?: number; after?: string }; response: DeviceView[] };
  device: { request: { id: string; history?: number }; response: DeviceDetail };
  "firmware/list": { request: Record<string, never>; response: FirmwareView[] };
  "firmware/add": {
    request: {
      /** The image (firmware-ota.bin or a canned .ota file), base64. */
      image: string;
      name: string;
      version: string;
      notes?: string;
      /** The file's name, for messages. */
      filename?: string;
      /** Flash size the checks assume, bytes (default 1 MiB). */
      flash?: number;
      /** Override the refusals that may be overridden. */
      force?: boolean;
    };
    response: { firmware: FirmwareView; verdicts: StoredVerdict[] };
  };
  "firmware/remove": { request: { id: string }; response: FirmwareView };
  "app/list": { request: Record<string, never>; response: AppReleaseView[] };
  /**
   * Adds an app release: its signed manifest (base64) and files (SHA-256 to
   * base64; files the server holds may be left out), or `release`:
   * name@version of one `mpota app add` stored in the server's data directory.
   */
  "app/add": {
    request: { manifest?: string; files?: Record<string, string>; release?: string; notes?: string };
    response: { app: AppReleaseView; verdicts: StoredVerdict[] };
  };
  update: {
    request: {
      device: string;
      firmware: string;
      /**
       * Install the firmware even when it is older than the one the device
       * runs (same line, by mpota's version order); without it such an
       * update is refused, the same as rollouts and line updates.
       */
      allowDowngrade?: boolean;
      /**
       * Install the app release even when the board runs an app of another
       * name, which it replaces; without it such an update is refused, and a
       * rollout leaves such boards out (docs/app-updates.md).
       */
      replaceApp?: boolean;
    };
    response: JobView;
  };
  jobs: { request: { device?: string; active?: boolean; limit?: number }; response: JobView[] };
  job: { request: { id: string }; response: JobDetail };
  "job/cancel": { request: { id: string }; response: JobView };
  /** The server instances sharing the storage, their leases and load. */
  status: { request: Record<string, never>; response: StatusView };
  /** A credential for a new device and its mpota_config.py (the secret is in the answer only). */
  "devices/add": { request: { id: string; host?: string; port?: number }; response: ProvisionedDevice };
  /** A new credential for a provisioned device; the old one stops working. */
  "devices/rotate": { request: { id: string; host?: string; port?: number }; response: ProvisionedDevice };
  /** Removes a device's credential: it can no longer connect. */
  "devices/revoke": { request: { id: string }; response: { device: string } };
  /** Allows (or no longer) commands without a signature for a device whose agent cannot verify them. */
  "devices/allow-unsigned": { request: { id: string; allow: boolean }; response: CredentialView };
  "devices/credentials": { request: Record<string, never>; response: CredentialView[] };
  /** The command keys and which devices trust which. */
  "command-keys": { request: Record<string, never>; response: CommandKeysView };
  /** Who changed what, newest first. */
  audit: { request: { limit?: number; before?: number }; response: AuditEntry[] };
}

export type BridgeRequestName = keyof BridgeApi;

export const BRIDGE_REQUEST_NAMES: readonly BridgeRequestName[] = [
  "info",
  "devices",
  "device",
  "firmware/list",
  "firmware/add",
  "firmware/remove",
  "app/list",
  "app/add",
  "update",
  "jobs",
  "job",
  "job/cancel",
  "status",
  "devices/add",
  "devices/rotate",
  "devices/revoke",
  "devices/allow-unsigned",
  "devices/credentials",
  "command-keys",
  "audit",
  ...ROLLOUT_REQUEST_NAMES,
];

/** The reply envelope, as Zigbee2MQTT's bridge replies. `data` is `{}` on error. */
export interface BridgeEnvelope<T> {
  status: "ok" | "error";
  data: T | Record<string, never>;
  error?: string;
  /**
   * On error: the exit code the CLI gives for this failure when it runs the
   * same thing locally (24 for a full disk), so a script sees the same number
   * either way. Absent from older servers: then 22, "refused".
   */
  code?: number;
  /** On error, a word for the cause where one is known: `disk-full` (as the HTTP API's 507 says). */
  cause?: string;
  transaction?: string | number;
}
