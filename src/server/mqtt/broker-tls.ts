import { spawnSync } from "node:child_process";
import {
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { join, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import { FileError } from "../../errors.ts";
import { BrokerTlsError } from "./broker-listen-error.ts";

/** The files a self-signed pair is kept in, inside the data directory. */
export const SELF_SIGNED_CERT_FILE = "broker-cert.pem";
export const SELF_SIGNED_KEY_FILE = "broker-key.pem";
/** Ten years: devices that pin the certificate (ESP32 `cadata`) must not lose it to an expiry soon. */
export const SELF_SIGNED_DAYS = 3650;
const DAY_MS = 24 * 3600 * 1000;

/** A certificate and its key, checked to belong together, ready for the TLS listener. */
export interface BrokerTlsMaterial {
  /** PEM: the server certificate, then any intermediate certificates. */
  cert: Buffer;
  key: Buffer;
  certFile: string;
  keyFile: string;
  selfSigned: boolean;
  /** SHA-256 of the server certificate (DER), colon-separated hex as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
  /** The names and addresses the certificate is valid for (its subjectAltName). */
  names: string[];
  /** When it stops being valid (ms since the epoch). */
  notAfter: number;
  /** Things a user should know (an ESP8266 cannot use it, it expires soon, ...), one sentence each. */
  notes: string[];
}

/** The names and addresses a self-signed certificate is made for: by default, this machine's. */
export interface HostIdentity {
  dnsNames: string[];
  addresses: string[];
}

/** This machine's host name (and its `.local` mDNS name), localhost, and every interface address. */
export function thisHost(
  name: string = hostname(),
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): HostIdentity {
  const dnsNames: string[] = [];
  if (/^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$/.test(name)) {
    dnsNames.push(name);
    if (!name.includes(".")) dnsNames.push(`${name}.local`);
  }
  if (!dnsNames.includes("localhost")) dnsNames.push("localhost");
  const addresses = new Set<string>(["127.0.0.1", "::1"]);
  for (const list of Object.values(interfaces)) {
    for (const entry of list ?? []) {
      // A link-local IPv6 address needs its interface (fe80::1%eth0): no client puts that in a URL.
      if (entry.family === "IPv6" && /^fe[89ab]/i.test(entry.address)) continue;
      addresses.add(entry.address);
    }
  }
  return { dnsNames, addresses: [...addresses] };
}

function readPem(path: string, what: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "it does not exist"
        : code === "EACCES"
          ? "permission denied (the user running mpota must be able to read it)"
          : code === "EISDIR"
            ? "it is a directory"
            : (error as Error).message;
    throw new FileError(`The TLS ${what} ${path} (${option}) cannot be read: ${why}.`);
  }
}

/** subjectAltName "DNS:a, IP Address:1.2.3.4" as ["a", "1.2.3.4"]. */
function altNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .map((entry) => entry.replace(/^(DNS|IP Address):/, ""))
    .filter((entry) => entry !== "");
}

/** Node writes IPv6 addresses in the subjectAltName in full (0:0:0:0:0:0:0:1): compare them in one form. */
function sameAddress(a: string, b: string): boolean {
  const norm = (s: string) => (s.includes(":") ? new URL(`http://[${s}]/`).hostname : s.toLowerCase());
  try {
    return norm(a) === norm(b);
  } catch {
    return a === b;
  }
}

/**
 * Checks that `cert` and `key` are PEM, belong together and can serve TLS.
 * `now` decides what "expired" means.
 */
export function checkBrokerTls(
  cert: Buffer,
  key: Buffer,
  files: { certFile: string; keyFile: string; selfSigned: boolean },
  now: number = Date.now(),
): BrokerTlsMaterial {
  const { certFile, keyFile } = files;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new BrokerTlsError(
      `${certFile} is not a PEM certificate (a file that starts with -----BEGIN CERTIFICATE-----): ${(error as Error).message}. Give the broker's certificate with --mqtt-tls-cert, or let mpota make one with --mqtt-tls-self-signed.`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    const encrypted =
      /ENCRYPTED/.test(key.toString("latin1")) || /passphrase/i.test((error as Error).message);
    throw new BrokerTlsError(
      encrypted
        ? `${keyFile} is an encrypted private key: mpota cannot ask for its passphrase. Write an unencrypted copy readable only by mpota's user (openssl pkey -in ${keyFile} -out broker-key.pem; chmod 600 broker-key.pem) and give that with --mqtt-tls-key.`
        : `${keyFile} is not a PEM private key (a file that starts with -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----): ${(error as Error).message}.`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new BrokerTlsError(
      `The key ${keyFile} does not belong to the certificate ${certFile} (their public keys differ). Give the key the certificate was made for.`,
    );
  }
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new BrokerTlsError(
      `The certificate ${certFile} and key ${keyFile} cannot serve TLS: ${(error as Error).message}.`,
    );
  }
  const notAfter = Date.parse(x509.validTo);
  const notes: string[] = [];
  if (notAfter <= now) {
    notes.push(
      `The certificate ${certFile} expired on ${new Date(notAfter).toISOString().slice(0, 10)}: clients that check it (an ESP32 with CERT_REQUIRED, mpota's CLI, Home Assistant, mosquitto_sub) refuse to connect. Renew it.`,
    );
  } else if (notAfter - now < 30 * DAY_MS) {
    notes.push(
      `The certificate ${certFile} expires on ${new Date(notAfter).toISOString().slice(0, 10)}: renew it before then, or clients that check it stop connecting.`,
    );
  }
  if (x509.publicKey.asymmetricKeyType !== "rsa") {
    notes.push(
      `The certificate ${certFile} has a${x509.publicKey.asymmetricKeyType === "ec" ? "n EC" : ` ${x509.publicKey.asymmetricKeyType}`} key: an ESP8266 (MicroPython's axTLS) cannot connect to it, since axTLS knows only RSA key exchange. Use an RSA certificate if ESP8266 devices are to use TLS.`,
    );
  }
  return {
    cert,
    key,
    certFile,
    keyFile,
    selfSigned: files.selfSigned,
    fingerprint: x509.fingerprint256,
    names: altNames(x509),
    notAfter,
    notes,
  };
}

/** Reads and checks the certificate and key a user gave (--mqtt-tls-cert, --mqtt-tls-key). */
export function loadBrokerTls(
  certFile: string,
  keyFile: string,
  now: number = Date.now(),
): BrokerTlsMaterial {
  const cert = readPem(certFile, "certificate", "--mqtt-tls-cert");
  const key = readPem(keyFile, "key", "--mqtt-tls-key");
  return checkBrokerTls(cert, key, { certFile, keyFile, selfSigned: false }, now);
}

export interface SelfSignedOptions {
  /** Names and addresses to put in a new certificate (default: this machine's). */
  host?: HostIdentity;
  /** The openssl program (default: `openssl` on the PATH). */
  openssl?: string;
  now?: number;
}

export interface SelfSignedResult extends BrokerTlsMaterial {
  /** True when this call made the pair (it did not exist, was incomplete or expired). */
  created: boolean;
  /** This machine's names and addresses that a kept certificate does not name. */
  missing: string[];
}

/** An RFC 5280 config for `openssl req -x509`: a server certificate (not a CA) for these names. */
function opensslConfig(host: HostIdentity): string {
  const san = [...host.dnsNames.map((n) => `DNS:${n}`), ...host.addresses.map((a) => `IP:${a}`)].join(", ");
  return [
    "[req]",
    "distinguished_name = dn",
    "x509_extensions = ext",
    "prompt = no",
    "[dn]",
    "CN = mpota embedded MQTT broker",
    "[ext]",
    "basicConstraints = critical, CA:FALSE",
    // keyEncipherment: the RSA key exchange of axTLS (ESP8266); digitalSignature: ECDHE.
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectKeyIdentifier = hash",
    `subjectAltName = ${san}`,
    "",
  ].join("\n");
}

/** Writes `data` to `path` through a temporary file (mode `mode`), so a reader never sees half a file. */
function writeAtomically(path: string, data: string | Buffer, mode: number): void {
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(temp, data, { mode, flag: "wx" });
    chmodSync(temp, mode);
    renameSync(temp, path);
  } finally {
    rmSync(temp, { force: true });
  }
}

function makeSelfSigned(
  dir: string,
  certFile: string,
  keyFile: string,
  host: HostIdentity,
  options: SelfSignedOptions,
): void {
  const openssl = options.openssl ?? "openssl";
  // RSA: the only key an ESP8266's axTLS can use; 2048 bits, what OpenSSL's default security level asks.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" });
  const work = join(dir, `.broker-tls-${randomBytes(4).toString("hex")}`);
  mkdirSync(work, { mode: 0o700 });
  try {
    const workKey = join(work, "key.pem");
    const workCert = join(work, "cert.pem");
    const config = join(work, "openssl.cnf");
    writeFileSync(workKey, keyPem, { mode: 0o600 });
    writeFileSync(config, opensslConfig(host));
    const run = spawnSync(
      openssl,
      [
        "req",
        "-new",
        "-x509",
        "-key",
        workKey,
        "-out",
        workCert,
        "-days",
        String(SELF_SIGNED_DAYS),
        "-sha256",
        "-set_serial",
        `0x${randomBytes(15).toString("hex")}`,
        "-config",
        config,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (run.error) {
      const code = (run.error as NodeJS.ErrnoException).code;
      throw new BrokerTlsError(
        code === "ENOENT"
          ? `Making a self-signed certificate needs the \`openssl\` program, which is not installed (or not on the PATH). Install it (Debian, Raspberry Pi OS: sudo apt install openssl; macOS has it), or give a certificate and key of your own with --mqtt-tls-cert FILE --mqtt-tls-key FILE.`
          : `openssl could not be run to make the self-signed certificate: ${run.error.message}.`,
      );
    }
    if (run.status !== 0) {
      throw new BrokerTlsError(
        `openssl failed to make the self-signed certificate (exit ${run.status}): ${(run.stderr || run.stdout).trim().split("\n").slice(0, 3).join(" ")}. Give a certificate and key of your own with --mqtt-tls-cert FILE --mqtt-tls-key FILE.`,
      );
    }
    const certPem = readFileSync(workCert);
    // The key first: a certificate is never there without its key.
    writeAtomically(keyFile, keyPem, 0o600);
    writeAtomically(certFile, certPem, 0o644);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The self-signed pair kept in `dataDir` (broker-cert.pem, broker-key.pem
 * with mode 0600): made on first use, then the same across restarts, so
 * clients can pin it. A new pair is made only when there is none, half of
 * one, or the certificate expired.
 */
export function selfSignedBrokerTls(dataDir: string, options: SelfSignedOptions = {}): SelfSignedResult {
  const dir = resolve(dataDir);
  const certFile = join(dir, SELF_SIGNED_CERT_FILE);
  const keyFile = join(dir, SELF_SIGNED_KEY_FILE);
  const now = options.now ?? Date.now();
  const host = options.host ?? thisHost();
  mkdirSync(dir, { recursive: true });
  let created = false;
  let material: BrokerTlsMaterial | undefined;
  if (existsSync(certFile) && existsSync(keyFile)) {
    material = checkBrokerTls(
      readPem(certFile, "certificate", "--mqtt-tls-self-signed"),
      readPem(keyFile, "key", "--mqtt-tls-self-signed"),
      { certFile, keyFile, selfSigned: true },
      now,
    );
    if (material.notAfter <= now) material = undefined;
  }
  if (material === undefined) {
    makeSelfSigned(dir, certFile, keyFile, host, options);
    created = true;
    material = checkBrokerTls(
      readFileSync(certFile),
      readFileSync(keyFile),
      { certFile, keyFile, selfSigned: true },
      now,
    );
  }
  const named = material.names;
  const missing = [...host.dnsNames, ...host.addresses].filter(
    (want) => !named.some((have) => sameAddress(have, want)),
  );
  if (missing.length > 0) {
    material.notes.push(
      `The self-signed certificate ${certFile} does not name ${missing.join(", ")} (this machine's name or addresses changed since it was made): clients that check it and connect by ${missing.length === 1 ? "that name" : "those names"} refuse it. Delete ${certFile} and ${keyFile} and restart to make a new one (clients that trust the old one must then be given the new one).`,
    );
  }
  return { ...material, created, missing };
}
