import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { deviceIdProblem, shorten } from "../../protocol/mqtt-contract.ts";
import type { CommandKeysView, CredentialView, ProvisionedDevice } from "../api/admin-views.ts";
import { RequestError } from "../base/request-error.ts";
import { hashSecret, newSecret } from "../mqtt/credentials.ts";
import { RESERVED_ID_PREFIX } from "../mqtt/principals.ts";
import {
  type AuditEntry,
  CredentialExistsError,
  type CredentialRecord,
  type Storage,
} from "../storage/storage.ts";

/** What `devices/add` and `devices/rotate` answer: the secret is shown this once and never stored. */
export interface ProvisioningDeps {
  storage: Storage;
  base: string;
  /** The command keys devices trust: modulus hex and key id, newest first (at most 3). */
  commandKeys: () => Array<{ modulusHex: string; kid: string }>;
  /**
   * APP_KEYS of the config: moduli (hex) of the keys whose app releases
   * boards trust (the data directory's app key, made if missing); absent:
   * the config has no APP_KEYS line of its own.
   */
  appKeys?: () => string[];
  /** Where devices reach the broker when the request does not say. */
  broker: () => { host: string; port: number };
  now: () => number;
  /** Called when a device's credential was replaced or removed: a live connection made with the old one is ended. */
  credentialChanged?: (deviceId: string) => void;
}

const CONFIG_TEMPLATE = new URL("../../../device/mpota_config.py", import.meta.url);

/** The first non-internal IPv4 address of this machine (what a device on the LAN would use), else 127.0.0.1. */
export function lanAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

function pythonString(value: string): string {
  return JSON.stringify(value); // ASCII-only values here: a JSON string is a valid Python literal
}

/**
 * device/mpota_config.py with the device's values set: each `NAME = ...`
 * line of the template is replaced, a name the template lacks is appended,
 * and every comment stays, so the file explains itself on the board.
 */
export function agentConfig(
  values: Record<string, string>,
  template = readFileSync(CONFIG_TEMPLATE, "utf8"),
): string {
  let text = template;
  for (const [name, literal] of Object.entries(values)) {
    const line = new RegExp(`^${name} = .*$`, "m");
    text = line.test(text)
      ? text.replace(line, () => `${name} = ${literal}`)
      : `${text.trimEnd()}\n${name} = ${literal}\n`;
  }
  return `# Written by \`mpota devices add\`: this device's credential is in it; keep it private.\n${text}`;
}

function credentialView(record: CredentialRecord): CredentialView {
  return {
    device: record.deviceId,
    createdAt: record.createdAt,
    rotatedAt: record.rotatedAt,
    commandSeq: record.commandSeq,
    allowUnsigned: record.allowUnsigned,
  };
}

function checkedId(request: Record<string, unknown>): string {
  const id = request.id;
  if (typeof id !== "string" || id === "") throw new RequestError('The request needs "id": the device id.');
  const problem =
    deviceIdProblem(id) ??
    (id.startsWith(RESERVED_ID_PREFIX)
      ? `ids starting with "${RESERVED_ID_PREFIX}" are kept for the broker's user names of the server and the admin`
      : undefined);
  if (problem) throw new RequestError(`Cannot provision: ${problem}.`);
  return id;
}

function brokerFor(
  request: Record<string, unknown>,
  fallback: { host: string; port: number },
): { host: string; port: number } {
  const host = request.host ?? fallback.host;
  const port = request.port ?? fallback.port;
  if (typeof host !== "string" || !/^[A-Za-z0-9.:_-]{1,253}$/.test(host))
    throw new RequestError('"host" must be the broker\'s host name or address as the device reaches it.');
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535)
    throw new RequestError('"port" must be a port number from 1 to 65535.');
  return { host, port: port as number };
}

/** The bridge handlers for device credentials and the audit list. */
export function provisioningHandlers(deps: ProvisioningDeps) {
  const issue = (id: string, secret: string, broker: { host: string; port: number }): ProvisionedDevice => {
    const keys = deps.commandKeys();
    const appKeys = deps.appKeys?.();
    const config = agentConfig({
      MQTT_HOST: pythonString(broker.host),
      MQTT_PORT: String(broker.port),
      MQTT_USER: pythonString(id),
      MQTT_PASSWORD: pythonString(secret),
      DEVICE_ID: pythonString(id),
      BASE_TOPIC: pythonString(deps.base),
      CMD_KEYS: `(${keys.map((k) => `${pythonString(k.modulusHex)},`).join(" ")})`,
      ...(appKeys ? { APP_KEYS: `(${appKeys.map((k) => `${pythonString(k)},`).join(" ")})` } : {}),
    });
    return {
      device: id,
      username: id,
      secret,
      config,
      broker,
      commandKeys: keys.map((k) => k.kid),
      commandKeyModuli: keys.map((k) => k.modulusHex),
      appKeyModuli: appKeys ?? [],
    };
  };

  const requireCredential = async (id: string): Promise<CredentialRecord> => {
    const record = await deps.storage.credentials.get(id);
    if (!record)
      throw new RequestError(
        `Device "${shorten(id)}" has no credential. Provision it with \`mpota devices add ${shorten(id)}\`.`,
      );
    return record;
  };

  return {
    "devices/add": async (request: Record<string, unknown>): Promise<ProvisionedDevice> => {
      const id = checkedId(request);
      const broker = brokerFor(request, deps.broker()); // checked before anything is stored
      const secret = newSecret();
      try {
        await deps.storage.credentials.add({ deviceId: id, hash: hashSecret(secret), at: deps.now() });
      } catch (error) {
        if (error instanceof CredentialExistsError)
          throw new RequestError(
            `Device "${id}" is already provisioned; nothing was changed. To give it a new credential (the old one stops working), use \`mpota devices rotate ${id}\`.`,
          );
        throw error;
      }
      return issue(id, secret, broker);
    },

    "devices/rotate": async (request: Record<string, unknown>): Promise<ProvisionedDevice> => {
      const id = checkedId(request);
      const broker = brokerFor(request, deps.broker()); // checked before the old credential is replaced
      const secret = newSecret();
      if (
        !(await deps.storage.credentials.replace({ deviceId: id, hash: hashSecret(secret), at: deps.now() }))
      )
        throw new RequestError(
          `Device "${id}" has no credential to replace. Provision it with \`mpota devices add ${id}\`.`,
        );
      deps.credentialChanged?.(id);
      return issue(id, secret, broker);
    },

    "devices/revoke": async (request: Record<string, unknown>): Promise<{ device: string }> => {
      const id = checkedId(request);
      await requireCredential(id);
      await deps.storage.credentials.remove(id);
      deps.credentialChanged?.(id);
      return { device: id };
    },

    "devices/allow-unsigned": async (request: Record<string, unknown>): Promise<CredentialView> => {
      const id = checkedId(request);
      if (typeof request.allow !== "boolean") throw new RequestError('"allow" must be true or false.');
      await requireCredential(id);
      await deps.storage.credentials.setAllowUnsigned(id, request.allow);
      return credentialView(await requireCredential(id));
    },

    "devices/credentials": async (): Promise<CredentialView[]> =>
      (await deps.storage.credentials.list()).map(credentialView),

    "command-keys": async (): Promise<CommandKeysView> => {
      const [current, next] = deps.commandKeys();
      const credentials = await deps.storage.credentials.list();
      const devices: CommandKeysView["devices"] = [];
      for (const c of credentials) {
        const state = (await deps.storage.devices.get(c.deviceId))?.state ?? null;
        devices.push({ device: c.deviceId, v: state?.v ?? null, keys: state?.keys ?? null });
      }
      return { current: current?.kid ?? null, next: next?.kid ?? null, devices };
    },

    audit: async (request: Record<string, unknown>): Promise<AuditEntry[]> => {
      const limit = request.limit ?? 100;
      const before = request.before;
      if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > 1000)
        throw new RequestError('"limit" must be a whole number from 1 to 1000.');
      if (before !== undefined && (!Number.isInteger(before) || (before as number) < 1))
        throw new RequestError('"before" must be an entry id.');
      return deps.storage.audit.list({
        limit: limit as number,
        ...(before !== undefined ? { before: before as number } : {}),
      });
    },
  };
}
