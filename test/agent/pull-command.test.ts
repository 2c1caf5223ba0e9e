import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { buildFlash } from "../../src/agent-host/flash-source.ts";
import { HOST_MODULES } from "../../src/agent-host/python-fakes.ts";
import { buildMicroPythonImage } from "../support/images.ts";
import { type PullFields, pullMessage, signedPull } from "./pull-support.ts";
import { CommandSigner, TestBroker } from "./support.ts";

// Contract v3's op "pull", as device/mpota_cmd.py checks it (with the
// field rules of device/mpota_pull.py) under MicroPython 1.27 (wasm). The
// commands are signed here with node:crypto over the bytes of the design
// note (mpota-cmd/3, the v2 lines, then sha and url), independently of the
// server's signer: the two sides meet only in the bytes.

const MICROPYTHON_PACKAGE: string = "@micropython/micropython-webassembly-pyscript";

interface MicroPython {
  registerJsModule(name: string, module: object): void;
  runPython(code: string): unknown;
  FS: { mkdirTree(path: string): void; writeFile(path: string, data: string): void };
}

const signer = new CommandSigner();
const stranger = new CommandSigner();
const FW = "0123456789abcdef0123456789abcdef";
const SHA = createHash("sha256").update("image").digest("hex");

function pullFields(over: Partial<PullFields> = {}): PullFields {
  return {
    v: 3,
    op: "pull",
    dev: "esp-1",
    seq: 5,
    job: "j-7f3a",
    fw: FW,
    size: 1_466_432,
    ver: "1.27.0",
    down: 0,
    sha: SHA,
    url: `http://192.168.1.10:8080/device/firmware/${FW}`,
    ...over,
  };
}

function signed(f: PullFields, by = signer, message = pullMessage(f)): string {
  return signedPull(f, by, message);
}

let mp: MicroPython;
const printed: string[] = [];

function run(code: string): string[] {
  printed.length = 0;
  mp.runPython(code);
  return printed.slice();
}

before(async () => {
  const { loadMicroPython } = (await import(MICROPYTHON_PACKAGE)) as {
    loadMicroPython: (options: object) => Promise<MicroPython>;
  };
  mp = await loadMicroPython({
    stdout: (line: string) => printed.push(line),
    stderr: (line: string) => printed.push(line),
  });
  mp.registerJsModule("_mpota_host", {});
  const files: Record<string, string> = {
    ...HOST_MODULES,
    // mpota_pull imports esp32 at the top; its field rules need nothing from it.
    "lib/esp32.py": "class Partition:\n    pass\n",
    "mpota_cmd.py": readFileSync(join(DEVICE_DIR, "mpota_cmd.py"), "utf8"),
    "mpota_pull.py": readFileSync(join(DEVICE_DIR, "mpota_pull.py"), "utf8"),
  };
  for (const [path, text] of Object.entries(files)) {
    if (path.includes("/")) mp.FS.mkdirTree(`/${path.slice(0, path.lastIndexOf("/"))}`);
    mp.FS.writeFile(`/${path}`, text);
  }
  run(`import mpota_cmd, mpota_pull, json
def fields(c):
    return mpota_pull.Pull.fields(None, c)
def guard(pull):
    for f in mpota_cmd.SLOTS:
        try:
            import os
            os.remove(f)
        except OSError:
            pass
    return mpota_cmd.Guard("esp-1", (${JSON.stringify(signer.modulusHex)},), False, fields if pull else None)
def check(g, m):
    c = g.check(m)
    print("TAKEN" if c else "NONE")`);
});

/** The agent's verdict on one payload: TAKEN, or its printed note. */
function verdict(payload: string, pull = true): string {
  const out = run(`g = guard(${pull ? "True" : "False"})\ncheck(g, ${JSON.stringify(payload)})`);
  return out.at(-1) === "TAKEN"
    ? "TAKEN"
    : (out.find((l) => l.startsWith("mpota: ignored")) ?? out.join("|"));
}

describe("op pull: the signed command (v3)", () => {
  test("a pull signed over the note's bytes is taken, and the agent rebuilds exactly those bytes", () => {
    const f = pullFields();
    assert.equal(verdict(signed(f)), "TAKEN");
    const out = run(
      `print(json.dumps(mpota_cmd.message(json.loads(${JSON.stringify(signed(f))})).decode()))`,
    );
    assert.equal(JSON.parse(out.at(-1) as string), pullMessage(f));
    assert.equal(
      verdict(signed(pullFields({ url: `https://mpota.example:8443/device/firmware/${FW}` }))),
      "TAKEN",
    );
  });

  test("an ESP8266 agent (no pull) ignores it as a malformed command, as a v2 agent does", () => {
    assert.match(verdict(signed(pullFields()), false), /^mpota: ignored malformed cmd /);
  });

  test("a wrong signature, a stranger's key, a v2 header or a changed url, sha or size is ignored", () => {
    const f = pullFields();
    const bad = /^mpota: ignored cmd with a bad signature, seq 5$/;
    assert.match(verdict(signed(f, signer, pullMessage(f, "mpota-cmd/2"))), bad);
    assert.match(verdict(signed(f, stranger)), /^mpota: ignored cmd signed by unknown key /);
    const good = JSON.parse(signed(f)) as Record<string, unknown>;
    for (const change of [
      { url: `http://10.0.0.66:8080/device/firmware/${FW}` },
      { sha: createHash("sha256").update("other").digest("hex") },
      { size: 1_466_433 },
      { ver: "1.27.1" },
    ]) {
      assert.match(verdict(JSON.stringify({ ...good, ...change })), bad, JSON.stringify(change));
    }
  });

  test("a replayed pull is ignored once its seq is recorded; a higher seq is taken", () => {
    const out = run(`g = guard(True)
c = g.check(${JSON.stringify(signed(pullFields({ seq: 9 })))})
print(g.commit(c, c["ver"]))
check(g, ${JSON.stringify(signed(pullFields({ seq: 9 })))})
check(g, ${JSON.stringify(signed(pullFields({ seq: 10 })))})`);
    assert.deepEqual(out.slice(-4), ["True", "mpota: ignored replayed cmd, seq 9 <= 9", "NONE", "TAKEN"]);
  });

  test("fields off the rules are ignored before the signature is checked", () => {
    const cases: Array<Partial<PullFields>> = [
      { v: 2 },
      { v: "3" },
      { sha: SHA.toUpperCase() },
      { sha: SHA.slice(1) },
      { url: `ftp://192.168.1.10/device/firmware/${FW}` },
      { url: "http://" },
      { url: "http://192.168.1.10:8080/a b" },
      { url: "http://192.168.1.10:8080/a,b" },
      { url: `http://${"h".repeat(241)}` },
      { fw: FW.slice(2) },
      { size: -1 },
      { down: 2 },
    ];
    for (const over of cases) {
      assert.match(verdict(signed(pullFields(over))), /^mpota: ignored malformed cmd /, JSON.stringify(over));
    }
    assert.equal(verdict(signed(pullFields({ url: `http://${"h".repeat(240)}` }))), "TAKEN");
  });
});

describe("op pull on an ESP8266 agent, end to end", () => {
  let broker: TestBroker;
  const devices: AgentDevice[] = [];
  before(async () => {
    broker = await TestBroker.start();
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });
  after(async () => {
    await broker.close();
  });

  test("a valid signed pull is ignored with a note: no ack, no reset, nothing written", async () => {
    const d = new AgentDevice({
      broker: broker.url,
      flash: buildFlash(buildMicroPythonImage({ size: 48_000, seed: 7 })),
      id: "esp-1",
      commandKeys: [signer.modulusHex],
    });
    devices.push(d);
    const up = d.nextPublish("status");
    await d.powerOn();
    await up;
    const steps = d.fs.steps.length;
    const published = d.published.length;
    const note = d.waitFor("stdout", (l) => l.startsWith("mpota: ignored"));
    await broker.publish("mpota/esp-1/cmd", signed(pullFields()), false);
    assert.match(await note, /^mpota: ignored malformed cmd /);
    assert.equal(d.phase, "running");
    assert.deepEqual(d.published.slice(published), []);
    assert.equal(d.fs.steps.length, steps);
  });
});
