import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { FileError } from "../../errors.ts";
import { newSecret } from "./credentials.ts";

/**
 * The server's password on an external broker that mpota configured
 * (`mpota broker-config mosquitto`): kept in `<data>/mqtt-server-secret`
 * (mode 0600), read by `mpota serve --mqtt-password-file`, and only its hash
 * goes into the broker's password file.
 */
export const MQTT_SERVER_SECRET_FILE = "mqtt-server-secret";

export function mqttServerSecretPath(dataDir: string): string {
  return join(resolve(dataDir), MQTT_SERVER_SECRET_FILE);
}

function readSecret(path: string): string {
  const text = readFileSync(path, "utf8").trim();
  if (text.length < 16) {
    throw new FileError(
      `${path} holds no usable secret. Delete it and run \`mpota broker-config mosquitto\` again (it makes a new one; restart \`mpota serve\` with it).`,
    );
  }
  return text;
}

/** Reads the server's broker secret, creating it (mode 0600, never half-written) when it does not exist. */
export function ensureMqttServerSecret(dataDir: string): { secret: string; path: string; created: boolean } {
  const path = mqttServerSecretPath(dataDir);
  try {
    return { secret: readSecret(path), path, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      if (error instanceof FileError) throw error;
      throw new FileError(`The server's broker secret ${path} cannot be read: ${(error as Error).message}.`);
    }
  }
  const secret = newSecret();
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, `${secret}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(temp, 0o600);
    // link() never replaces: a secret another run created meanwhile wins, and both runs use it.
    linkSync(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST")
      return { secret: readSecret(path), path, created: false };
    throw error;
  } finally {
    rmSync(temp, { force: true });
  }
  return { secret, path, created: true };
}
