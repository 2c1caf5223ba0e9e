import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BrokerTlsError } from "../../src/server/mqtt/broker-listen-error.ts";
import {
  SELF_SIGNED_CERT_FILE,
  SELF_SIGNED_KEY_FILE,
  selfSignedBrokerTls,
} from "../../src/server/mqtt/broker-tls.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { LogCapture } from "../server/support/log-capture.ts";
import { tempDir } from "../server/support/test-server.ts";
import { connectTestClient, opensslFingerprint } from "./support.ts";

const host = {
  dnsNames: ["mpota-test-host", "mpota-test-host.local", "localhost"],
  addresses: ["127.0.0.1", "::1", "192.0.2.7"],
};

/** Starts a broker with the pair, connects a client that trusts `ca` over TLS, and stops again. */
async function connectsWith(
  material: { cert: Buffer; key: Buffer },
  ca: Buffer,
  name = "127.0.0.1",
): Promise<void> {
  const broker = await EmbeddedBroker.start({
    host: "127.0.0.1",
    port: 0,
    logger: new LogCapture("silent").logger,
    tls: { host: "127.0.0.1", port: 0, cert: material.cert, key: material.key },
  });
  try {
    const client = await connectTestClient(`mqtts://${name}:${broker.tls?.port}`, { ca });
    client.end(true);
  } finally {
    await broker.close();
  }
}

describe("the self-signed certificate of the embedded broker", () => {
  it("is made once for the host's names and addresses, key mode 0600, and kept across restarts", async () => {
    const t = tempDir("mpota-selfsigned-");
    try {
      const first = selfSignedBrokerTls(t.dir, { host });
      assert.equal(first.created, true);
      assert.equal(first.certFile, join(t.dir, SELF_SIGNED_CERT_FILE));
      assert.equal(statSync(join(t.dir, SELF_SIGNED_KEY_FILE)).mode & 0o777, 0o600);
      assert.deepEqual(first.names, [
        "mpota-test-host",
        "mpota-test-host.local",
        "localhost",
        "127.0.0.1",
        "0:0:0:0:0:0:0:1",
        "192.0.2.7",
      ]);
      // The fingerprint printed is the one openssl shows for the file.
      assert.equal(first.fingerprint, opensslFingerprint(first.certFile));
      const x509 = new X509Certificate(readFileSync(first.certFile));
      assert.equal(x509.ca, false);
      assert.equal(x509.publicKey.asymmetricKeyType, "rsa");
      const days = (Date.parse(x509.validTo) - Date.now()) / 86_400_000;
      assert.ok(days > 3640 && days <= 3650, `valid for ${days} days`);
      assert.deepEqual(first.notes, []);
      const certBytes = readFileSync(first.certFile);
      await connectsWith(first, certBytes);
      await connectsWith(first, certBytes, "localhost");

      const again = selfSignedBrokerTls(t.dir, { host });
      assert.equal(again.created, false);
      assert.equal(again.fingerprint, first.fingerprint);
      assert.deepEqual(readFileSync(again.certFile), certBytes);
      // A client that pinned the first start's certificate still connects after the restart.
      await connectsWith(again, certBytes);
    } finally {
      t.remove();
    }
  });

  it("says which of the host's names and addresses a kept certificate lacks", () => {
    const t = tempDir("mpota-selfsigned-");
    try {
      selfSignedBrokerTls(t.dir, { host });
      const moved = selfSignedBrokerTls(t.dir, {
        host: { ...host, addresses: [...host.addresses, "192.0.2.99"] },
      });
      assert.equal(moved.created, false);
      assert.deepEqual(moved.missing, ["192.0.2.99"]);
      assert.equal(moved.notes.length, 1);
      assert.match(
        moved.notes[0] ?? "",
        /does not name 192\.0\.2\.99 \(this machine's name or addresses changed since it was made\): clients that check it and connect by that name refuse it\. Delete .*broker-cert\.pem and .*broker-key\.pem and restart to make a new one/,
      );
    } finally {
      t.remove();
    }
  });

  it("is made again when it expired or half of the pair is gone", () => {
    const t = tempDir("mpota-selfsigned-");
    try {
      const first = selfSignedBrokerTls(t.dir, { host });
      const later = first.notAfter + 86_400_000;
      const renewed = selfSignedBrokerTls(t.dir, { host, now: later });
      assert.equal(renewed.created, true);
      assert.notEqual(renewed.fingerprint, first.fingerprint);
      rmSync(renewed.certFile);
      const remade = selfSignedBrokerTls(t.dir, { host });
      assert.equal(remade.created, true);
      assert.notEqual(remade.fingerprint, renewed.fingerprint);
    } finally {
      t.remove();
    }
  });

  it("needs openssl, and says so when it is missing", () => {
    const t = tempDir("mpota-selfsigned-");
    try {
      assert.throws(
        () => selfSignedBrokerTls(t.dir, { host, openssl: join(t.dir, "no-openssl-here") }),
        (error: Error) => {
          assert.ok(error instanceof BrokerTlsError);
          assert.equal(error.exitCode, 21);
          assert.equal(
            error.message,
            "Making a self-signed certificate needs the `openssl` program, which is not installed (or not on the PATH). Install it (Debian, Raspberry Pi OS: sudo apt install openssl; macOS has it), or give a certificate and key of your own with --mqtt-tls-cert FILE --mqtt-tls-key FILE.",
          );
          return true;
        },
      );
      // Nothing half-made is left behind.
      assert.throws(() => statSync(join(t.dir, SELF_SIGNED_KEY_FILE)), /ENOENT/);
      assert.throws(() => statSync(join(t.dir, SELF_SIGNED_CERT_FILE)), /ENOENT/);
    } finally {
      t.remove();
    }
  });
});
