import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileError } from "../../errors.ts";
import { readOrCreateSecretFile } from "../base/secret-file.ts";
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
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (error) {
    throw new FileError(`The server's broker secret ${path} cannot be read: ${(error as Error).message}.`);
  }
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
  const { value: secret, created } = readOrCreateSecretFile(path, readSecret, () => {
    const fresh = newSecret();
    return { text: `${fresh}\n`, value: fresh };
  });
  return { secret, path, created };
}
