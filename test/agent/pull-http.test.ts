import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { buildFlash } from "../../src/agent-host/flash-source.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { TestBroker } from "./support.ts";

// The HTTP client of device/mpota_pull.py under MicroPython 1.27 (wasm),
// over the simulated device's sockets to a real node:http server: the
// request it sends (GET, Host, Basic auth with MQTT_USER:MQTT_PASSWORD,
// Range when resuming) and how it reads every kind of answer. The slot is
// a small in-memory stand-in for esp32.Partition (readblocks/writeblocks
// of whole 4096-byte blocks); the full ESP32 board model is tested apart.

const SLOT_DOUBLE = `# esp32.Partition as far as the HTTP client uses it: blocks kept in a dict.
class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    blocks = {}

    def __init__(self, id, block_size=4096):
        self.label = "ota_0" if id == 1 else id

    def info(self):
        return (0, 16, 0x10000, 0x180000, self.label, False)

    def get_next_update(self):
        return Partition("ota_1")

    def readblocks(self, n, buf):
        b = Partition.blocks.get((self.label, n))
        buf[:] = b if b else b"\\xff" * len(buf)

    def writeblocks(self, n, buf):
        if len(buf) % 4096:
            raise OSError(-260, "ESP_ERR_INVALID_SIZE")
        Partition.blocks[(self.label, n)] = bytes(buf)
`;

const SIZE = 10_000;
const image = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** What the device runs: one fetch per case from cases.json, each result printed as a JSON line. */
const MAIN = `import json
from hashlib import sha256
from binascii import hexlify
import esp32
import mpota_pull


class A:
    fw = None
    vmin = 0

    def _c(self, n, d=None):
        return {"MQTT_USER": "esp-1", "MQTT_PASSWORD": "s3cr:et"}.get(n, d)


p = mpota_pull.Pull(A())
for name, url, got in json.load(open("cases.json")):
    esp32.Partition.blocks.clear()
    r = {"job": "j-1", "url": url, "size": ${SIZE}}
    try:
        h, g = p._http(r, sha256(), bytearray(4096), got)
        out = {"got": g, "sha": hexlify(h.digest()).decode()}
        slot = bytearray()
        b = bytearray(4096)
        for n in range((g + 4095) // 4096):
            p.to.readblocks(n, b)
            slot += b
        out["slot"] = hexlify(sha256(slot).digest()).decode()
        out["blocks"] = sorted(k[1] for k in esp32.Partition.blocks)
    except Exception as e:
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    print("RESULT " + json.dumps([name, out]))
print("DONE")
`;

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
}

let broker: TestBroker;
let server: Server;
let base: string;
const seen: Seen[] = [];

before(async () => {
  broker = await TestBroker.start();
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    const name = (req.url ?? "").split("/").at(-1);
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const from = range ? Number(range[1]) : 0;
    switch (name) {
      case "ranged":
        if (range) {
          res.writeHead(206, {
            "Content-Length": SIZE - from,
            "Content-Range": `bytes ${from}-${SIZE - 1}/${SIZE}`,
          });
          res.end(image.subarray(from));
          return;
        }
        res.writeHead(200, { "Content-Length": SIZE });
        res.end(image);
        return;
      case "whole": // ignores Range
        res.writeHead(200, { "Content-Length": SIZE });
        res.end(image);
        return;
      case "missing":
        res.writeHead(404, { "Content-Type": "text/plain" });
        res.end("unknown release");
        return;
      case "busy":
        res.writeHead(503);
        res.end();
        return;
      case "short":
        res.writeHead(200, { "Content-Length": SIZE });
        res.write(image.subarray(0, 5000), () => res.socket?.end());
        return;
      case "wrongrange":
        res.writeHead(206, { "Content-Length": SIZE - from, "Content-Range": `bytes 0-${SIZE - 1}/${SIZE}` });
        res.end(image);
        return;
      case "longheader":
        res.writeHead(200, { "Content-Length": SIZE, "X-Padding": "a".repeat(600) });
        res.end(image);
        return;
      case "chunked": // no Content-Length: node sends it chunked
        res.writeHead(200);
        res.end(image);
        return;
      case "wronglength":
        res.writeHead(200, { "Content-Length": SIZE - 1 });
        res.end(image.subarray(1));
        return;
    }
    res.writeHead(500);
    res.end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/device/firmware`;
});

after(async () => {
  server.close();
  await broker.close();
});

describe("mpota_pull's HTTP client against node:http", () => {
  test("requests, resumes and refuses as the answers say", async () => {
    const cases: Array<[string, string, number]> = [
      ["whole", `${base}/whole`, 0],
      ["ranged", `${base}/ranged`, 8192],
      ["restart", `${base}/whole`, 4096],
      ["missing", `${base}/missing`, 0],
      ["busy", `${base}/busy`, 0],
      ["short", `${base}/short`, 0],
      ["wrongrange", `${base}/wrongrange`, 4096],
      ["wronglength", `${base}/wronglength`, 0],
      ["chunked", `${base}/chunked`, 0],
      ["longheader", `${base}/longheader`, 0],
    ];
    const d = new AgentDevice({
      broker: broker.url,
      flash: buildFlash(buildMicroPythonImage({ size: 48_000, seed: 7 })),
      id: "esp-1",
      main: MAIN,
      files: {
        "esp32.py": SLOT_DOUBLE,
        "mpota_pull.py": readFileSync(join(DEVICE_DIR, "mpota_pull.py"), "utf8"),
        "cases.json": JSON.stringify(cases),
      },
    });
    try {
      const done = d.waitFor("stdout", (l) => l === "DONE", 30_000);
      await d.powerOn();
      await done;
    } finally {
      await d.close();
    }
    const results = new Map(
      d.output
        .filter((l) => l.startsWith("RESULT "))
        .map((l) => JSON.parse(l.slice(7)) as [string, Record<string, unknown>]),
    );
    assert.equal(results.size, cases.length, d.output.join("\n"));
    // Whole image: three blocks, the last padded with 0xFF as erased flash.
    const padded = Buffer.concat([image, Buffer.alloc(3 * 4096 - SIZE, 0xff)]);
    assert.deepEqual(results.get("whole"), {
      got: SIZE,
      sha: sha(image),
      slot: sha(padded),
      blocks: [0, 1, 2],
    });
    // Resumed at 8192: only the rest is fetched, hashed and written (block 2).
    assert.deepEqual(results.get("ranged"), {
      got: SIZE,
      sha: sha(image.subarray(8192)),
      slot: sha(Buffer.concat([Buffer.alloc(8192, 0xff), padded.subarray(8192)])),
      blocks: [2],
    });
    // A server without Range support sends it all: the hash starts over.
    assert.deepEqual(results.get("restart"), {
      got: SIZE,
      sha: sha(image),
      slot: sha(padded),
      blocks: [0, 1, 2],
    });
    assert.deepEqual(results.get("missing"), {
      error: "Refused: the server refused the download: HTTP 404 Not Found",
    });
    assert.deepEqual(results.get("busy"), { error: "OSError: HTTP 503" });
    assert.deepEqual(results.get("short"), { error: "OSError: the server closed at byte 5000 of 10000" });
    assert.deepEqual(results.get("wrongrange"), {
      error: `Refused: the server sent bytes bytes 0-${SIZE - 1}/${SIZE}, not 4096-${SIZE - 1}/${SIZE}`,
    });
    assert.deepEqual(results.get("wronglength"), {
      error: `Refused: the server sends ${SIZE - 1} bytes, the command says ${SIZE}`,
    });

    assert.deepEqual(results.get("longheader"), { error: "OSError: an HTTP header line over 512 bytes" });
    assert.deepEqual(results.get("chunked"), { error: "Refused: the server sent no Content-Length" });

    const auth = `Basic ${Buffer.from("esp-1:s3cr:et").toString("base64")}`;
    assert.equal(seen.length, cases.length);
    for (const s of seen) {
      assert.equal(s.headers.authorization, auth);
      assert.equal(s.headers.host, new URL(base).host);
      assert.equal(s.headers.connection, "close");
    }
    assert.deepEqual(
      seen.map((s) => [s.url.split("/").at(-1), s.headers.range ?? null]),
      cases.map(([, url, got]) => [url.split("/").at(-1), got ? `bytes=${got}-` : null]),
    );
    assert.ok(seen.every((s) => s.url.startsWith("/device/firmware/")));
  });
});
