import type { InstanceRecord } from "../storage/storage.ts";

/**
 * What the server answers about itself and about device credentials: its
 * instances and their leases (`mpota status`), provisioned devices and the
 * command keys they trust. Plain shapes, shared by the bridge, the HTTP API
 * and the rooms that build them.
 */

export interface InstanceView extends InstanceRecord {
  alive: boolean;
  /** Leases it holds now, from the job and rollout tables (not its own word). */
  leases: { jobs: string[]; rollouts: string[] };
}

export interface StatusView {
  storage: string;
  /** This answer's instance. */
  answeredBy: string;
  heartbeatMs: number;
  instances: InstanceView[];
  /** Leases held by no live instance: they are taken over when they expire. */
  orphanLeases: { jobs: string[]; rollouts: string[] };
}

export interface ProvisionedDevice {
  device: string;
  /** The MQTT user name (the device id) and password. */
  username: string;
  secret: string;
  /** A ready mpota_config.py for the device. */
  config: string;
  broker: { host: string; port: number };
  /** Key ids of the command keys written into the config. */
  commandKeys: string[];
  /** The same keys' moduli (hex), as CMD_KEYS holds them. */
  commandKeyModuli: string[];
  /** The moduli (hex) of the app keys written into the config's APP_KEYS (none: no APP_KEYS line). */
  appKeyModuli: string[];
}

export interface CredentialView {
  device: string;
  createdAt: number;
  rotatedAt: number | null;
  commandSeq: number;
  allowUnsigned: boolean;
}

/** The command keys and which provisioned device trusts which (for a rotation). */
export interface CommandKeysView {
  current: string | null;
  /** During a rotation: the key devices are being given. */
  next: string | null;
  /** Each provisioned device's contract version and the key ids it reported (null: not known yet). */
  devices: Array<{ device: string; v: 1 | 2 | 3 | null; keys: string[] | null }>;
}
