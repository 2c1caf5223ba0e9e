import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { connect, type IClientOptions, type MqttClient } from "mqtt";

/** MQTT.js options, and the TLS ones it hands to tls.connect (an ESP8266's protocol and ciphers, a socket to watch). */
export type TestClientOptions = IClientOptions & Pick<ConnectionOptions, "maxVersion" | "ciphers" | "socket">;

/**
 * The options every MQTT client in these tests connects with. When the
 * embedded broker asks for credentials (issue 14), they go here, once.
 */
export function testClientOptions(extra: TestClientOptions = {}): IClientOptions {
  return {
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...extra,
  };
}

/** Connects with testClientOptions; rejects with the error the connection failed with. */
export function connectTestClient(url: string, extra: TestClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = connect(url, testClientOptions(extra));
    const fail = (error: Error) => {
      client.end(true);
      reject(error);
    };
    client.once("connect", () => {
      client.off("error", fail);
      resolve(client);
    });
    client.once("error", fail);
    client.once("close", () => fail(new Error(`connection to ${url} closed before CONNACK`)));
  });
}

/** Resolves with the first message on `topic` the client receives after subscribing. */
export async function nextMessage(client: MqttClient, topic: string): Promise<Buffer> {
  const message = new Promise<Buffer>((resolve) => {
    client.on("message", (t, payload) => {
      if (t === topic) resolve(payload);
    });
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return message;
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: "pipe" });
}

/** A throwaway certificate authority: its certificate and key files. */
export interface TestCa {
  cert: string;
  key: string;
}

export function makeCa(dir: string, name: string): TestCa {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
  return { cert, key };
}

/**
 * A server certificate signed by `ca`, valid for `san` (openssl's syntax:
 * "DNS:localhost,IP:127.0.0.1"), with an RSA or EC key.
 */
export function issueCert(
  ca: TestCa,
  dir: string,
  name: string,
  san: string,
  keyType: "rsa" | "ec" = "rsa",
): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  const newKey =
    keyType === "rsa"
      ? ["-newkey", "rsa:2048"]
      : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  openssl(["req", ...newKey, "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
  writeFileSync(ext, `subjectAltName=${san}\n`);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { cert, key };
}

/** `openssl x509 -fingerprint -sha256` of a certificate file: what a user compares by hand. */
export function opensslFingerprint(certFile: string): string {
  const out = execFileSync("openssl", ["x509", "-noout", "-fingerprint", "-sha256", "-in", certFile], {
    encoding: "utf8",
  });
  return out.trim().replace(/^.*Fingerprint=/i, "");
}

export const read = (path: string): Buffer => readFileSync(path);
