import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import type { TLSSocket } from "node:tls";
import { MAX_SEND_FRAGMENT } from "../../src/server/mqtt/broker-tls-listener.ts";
import { EmbeddedBroker } from "../../src/server/mqtt/embedded-broker.ts";
import { LogCapture } from "../server/support/log-capture.ts";
import { tempDir } from "../server/support/test-server.ts";
import { connectTestClient, issueCert, makeCa, nextMessage, read } from "./support.ts";

/** The cipher suites MicroPython's ESP8266 build offers (axTLS, CONFIG_SSL_PROT_LOW order), TLS 1.2 at most. */
const AXTLS_SUITES = ["AES128-SHA", "AES128-SHA256", "AES256-SHA", "AES256-SHA256"];
/** axTLS's receive buffer on the ESP8266 (RT_MAX_PLAIN_LENGTH 1024 + RT_EXTRA 4096) less the 5-byte record header. */
const ESP8266_MAX_RECORD = 1024 + 4096 - 5;

describe("the embedded broker's TLS listener", () => {
  const t = tempDir("mpota-tls-");
  const ca = makeCa(t.dir, "test-ca");
  const otherCa = makeCa(t.dir, "other-ca");
  const server = issueCert(ca, t.dir, "broker", "DNS:localhost,IP:127.0.0.1");
  let broker: EmbeddedBroker;
  let mqtts = "";
  let mqtt = "";

  before(async () => {
    broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      port: 0,
      logger: new LogCapture("silent").logger,
      tls: { host: "127.0.0.1", port: 0, cert: read(server.cert), key: read(server.key) },
    });
    assert.ok(broker.tls);
    mqtts = `mqtts://127.0.0.1:${broker.tls.port}`;
    mqtt = `mqtt://127.0.0.1:${broker.port}`;
  });
  after(async () => {
    await broker.close();
    t.remove();
  });

  it("serves a client that trusts its CA, beside plain clients of the same broker", async () => {
    const secure = await connectTestClient(mqtts, { ca: read(ca.cert) });
    const plain = await connectTestClient(mqtt);
    try {
      const toSecure = nextMessage(secure, "mpota/sim-1/cmd");
      await plain.publishAsync("mpota/sim-1/cmd", "over plain, read over TLS", { qos: 1 });
      assert.equal((await toSecure).toString(), "over plain, read over TLS");
      const toPlain = nextMessage(plain, "mpota/sim-1/state");
      await secure.publishAsync("mpota/sim-1/state", "over TLS, read over plain", { qos: 1 });
      assert.equal((await toPlain).toString(), "over TLS, read over plain");
      // The name in the certificate works as well as the address.
      const byName = await connectTestClient(`mqtts://localhost:${broker.tls?.port}`, { ca: read(ca.cert) });
      byName.end(true);
    } finally {
      secure.end(true);
      plain.end(true);
    }
  });

  it("is refused by a client that trusts another CA, or none", async () => {
    await assert.rejects(
      connectTestClient(mqtts, { ca: read(otherCa.cert) }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
        return true;
      },
    );
    await assert.rejects(connectTestClient(mqtts), (error: Error & { code?: string }) => {
      assert.equal(error.code, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      return true;
    });
  });

  it("is refused by a client that connects by a name the certificate does not hold", async () => {
    const elsewhere = issueCert(ca, t.dir, "elsewhere", "DNS:broker.example");
    const other = await EmbeddedBroker.start({
      host: "127.0.0.1",
      port: 0,
      logger: new LogCapture("silent").logger,
      tls: { host: "127.0.0.1", port: 0, cert: read(elsewhere.cert), key: read(elsewhere.key) },
    });
    try {
      await assert.rejects(
        connectTestClient(`mqtts://127.0.0.1:${other.tls?.port}`, { ca: read(ca.cert) }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, "ERR_TLS_CERT_ALTNAME_INVALID");
          assert.match(error.message, /IP: 127\.0\.0\.1 is not in the cert's list/);
          return true;
        },
      );
    } finally {
      await other.close();
    }
  });

  it("accepts each cipher suite an ESP8266 offers (TLS 1.2, RSA key exchange)", async () => {
    for (const suite of AXTLS_SUITES) {
      const client = await connectTestClient(mqtts, {
        ca: read(ca.cert),
        maxVersion: "TLSv1.2",
        ciphers: suite,
      });
      try {
        const socket = client.stream as unknown as TLSSocket;
        assert.equal(socket.getCipher().name, suite);
        assert.equal(socket.getProtocol(), "TLSv1.2");
      } finally {
        client.end(true);
      }
    }
  });

  it("sends records an ESP8266 can hold, also for a message larger than its buffer", async () => {
    // An ESP8266-like client: TLS 1.2, AES128-SHA; the bytes on the wire are read record by record.
    const raw = netConnect(broker.tls?.port ?? 0, "127.0.0.1");
    const wire: Buffer[] = [];
    const tap = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        raw.write(chunk, callback);
      },
      final(callback) {
        raw.end();
        callback();
      },
      destroy(error, callback) {
        raw.destroy();
        callback(error);
      },
    });
    raw.on("data", (data: Buffer) => {
      wire.push(data);
      tap.push(data);
    });
    raw.on("end", () => tap.push(null));
    const device = await connectTestClient(mqtts, {
      ca: read(ca.cert),
      maxVersion: "TLSv1.2",
      ciphers: "AES128-SHA",
      socket: tap,
    });
    const plain = await connectTestClient(mqtt);
    try {
      const big = Buffer.alloc(12_000, "x");
      const received = nextMessage(device, "mpota/sim-1/cmd");
      await plain.publishAsync("mpota/sim-1/cmd", big, { qos: 1 });
      assert.deepEqual(await received, big);
      const bytes = Buffer.concat(wire);
      const records: number[] = [];
      for (let at = 0; at + 5 <= bytes.length; at += 5 + bytes.readUInt16BE(at + 3)) {
        records.push(bytes.readUInt16BE(at + 3));
      }
      const largest = Math.max(...records);
      assert.ok(
        largest <= ESP8266_MAX_RECORD,
        `a ${largest}-byte record would overflow an ESP8266's axTLS buffer`,
      );
      assert.ok(
        largest > MAX_SEND_FRAGMENT,
        `the 12,000-byte message came in records of at most ${largest} bytes`,
      );
    } finally {
      device.end(true);
      plain.end(true);
    }
  });
});
