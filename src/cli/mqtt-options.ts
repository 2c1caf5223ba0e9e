// The broker options every command that talks MQTT shares, and the connection they describe.
import { type Command, Option } from "commander";
import { UsageError } from "../errors.ts";
import { DEFAULT_BASE_TOPIC } from "../server/api/topics.ts";
import { DEFAULT_CLIENT_URL } from "../server/bridge/bridge-client.ts";
import type { MqttConnection } from "../server/mqtt/mqtt-connect.ts";
import { readPasswordFile } from "./password-file.ts";

/** The broker options every command that talks MQTT shares (serve, and the commands that ask the server). */
export interface MqttCliOptions {
  mqtt?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  /** A file whose first line is the password (kept out of `ps`). */
  mqttPasswordFile?: string;
  mqttCa?: string;
  mqttCert?: string;
  mqttKey?: string;
  mqttInsecure?: boolean;
  base: string;
}

/** Adds --mqtt, credentials, TLS files and --base to a command. */
export function addMqttOptions(command: Command, role: "server" | "client"): Command {
  // The client commands take MPOTA_MQTT, as --data takes MPOTA_DATA: a server
  // on another port then needs no --mqtt on every command. Not serve: a
  // variable left in the shell must not switch it off its embedded broker.
  const mqtt =
    role === "server"
      ? new Option(
          "--mqtt <url>",
          "use this broker instead of the embedded one (mqtt://host:1883, mqtts://host:8883)",
        )
      : new Option("--mqtt <url>", `the broker the server uses (default ${DEFAULT_CLIENT_URL})`).env(
          "MPOTA_MQTT",
        );
  return command
    .addOption(mqtt)
    .option("--mqtt-username <name>", "user name for the broker")
    .addOption(
      new Option("--mqtt-password <password>", "password for the broker (or set MPOTA_MQTT_PASSWORD)").env(
        "MPOTA_MQTT_PASSWORD",
      ),
    )
    .option(
      "--mqtt-password-file <file>",
      "read the broker password from this file's first line (a password given on the command line shows in ps)",
    )
    .option("--mqtt-ca <file>", "PEM file of the CA that signed the broker's TLS certificate")
    .option("--mqtt-cert <file>", "PEM client certificate for TLS (with --mqtt-key)")
    .option("--mqtt-key <file>", "PEM private key of the client certificate")
    .option("--mqtt-insecure", "accept any TLS certificate from the broker (testing only)")
    .option("--base <topic>", "base topic of devices and server", DEFAULT_BASE_TOPIC);
}

/** The broker connection the options describe. */
export function mqttConnection(options: MqttCliOptions, url: string): MqttConnection {
  if (options.mqttPasswordFile !== undefined && options.mqttPassword !== undefined) {
    throw new UsageError(
      "Give the broker password once: --mqtt-password (or MPOTA_MQTT_PASSWORD) or --mqtt-password-file, not both.",
    );
  }
  const password =
    options.mqttPasswordFile !== undefined
      ? readPasswordFile(options.mqttPasswordFile, "--mqtt-password-file")
      : options.mqttPassword;
  return {
    url,
    ...(options.mqttUsername !== undefined ? { username: options.mqttUsername } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(options.mqttCa !== undefined ? { caFile: options.mqttCa } : {}),
    ...(options.mqttCert !== undefined ? { certFile: options.mqttCert } : {}),
    ...(options.mqttKey !== undefined ? { keyFile: options.mqttKey } : {}),
    ...(options.mqttInsecure ? { insecure: true } : {}),
  };
}
