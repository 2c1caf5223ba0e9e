import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { type AddressInfo, createServer } from "node:net";
import { describe, test } from "node:test";
import type { AgentDevice } from "../../src/agent-host/agent-device.ts";
import { ResetCause } from "../../src/agent-host/reset-cause.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { brokerHooks, CommandSigner, MuteRelay } from "../agent/support.ts";
import {
  type AppRelease,
  AppServer,
  acks,
  appCommand,
  appDevice,
  appRelease,
  nextAck,
  nextState,
  PASSWORD,
  settled,
  sha256Hex,
  twentyFiles,
} from "./agent-app-support.ts";
import { record, slotFiles } from "./slot-board.ts";

// What goes wrong on the way of an app update, under MicroPython 1.27
// (wasm) on a simulated ESP8266 (LittleFS) with the unmodified agent, a real
// broker and node:http as the server's device route: a transfer cut by the
// server or by a power cut resumes and keeps what it verified; a release
// that is wrong is refused for good with the running app untouched; a
// command replayed or forged is ignored; a sleepy board goes on over wakes.

const signer = new CommandSigner();
const V1 = twentyFiles("1.0.0");
const V2 = twentyFiles("1.1.0", 7);

let seq = 1;
const hooks = brokerHooks();
const { cleanups } = hooks;

async function rig(
  id: string,
  extra: Parameters<typeof appDevice>[3] = {},
): Promise<{ d: AgentDevice; server: AppServer }> {
  const server = await AppServer.start(id, PASSWORD);
  cleanups.push(() => server.close());
  const d = appDevice(hooks.broker.url, id, signer, extra);
  cleanups.push(() => d.close());
  const first = settled(d, () => true);
  await d.powerOn();
  await first;
  return { d, server };
}

async function send(
  id: string,
  server: AppServer,
  r: AppRelease,
  job: string,
  down: 0 | 1 = 0,
): Promise<void> {
  server.active = r.sha;
  const url = server.add(r);
  await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, job, r, url, down), true);
}

async function installed(id: string, d: AgentDevice, server: AppServer, r: AppRelease, job: string) {
  const up = settled(d, (app) => app.id === r.sha);
  await send(id, server, r, job);
  return up;
}

const fileRequests = (server: AppServer, from = 0) =>
  server
    .since(from)
    .filter((q) => q.what !== "manifest")
    .map((q) => q.what);

describe("an app update that breaks off resumes", () => {
  test("the server closes mid-file: final:false error, the try again fetches that file and the rest only", async () => {
    const id = "cut-1";
    const { d, server } = await rig(id);
    server.cut = { file: "m05.py", after: 300 };
    await installed(id, d, server, V1, "j-cut");
    const errors = acks(d, "j-cut").filter((a) => a.error !== undefined);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.final, false);
    assert.equal(errors[0]?.error, "the server closed at byte 300 of 1000 of m05.py");
    // m01..m04 were verified before the cut and were not fetched again; the manifest was kept too.
    const files = fileRequests(server);
    assert.equal(files.filter((f) => f === "m05.py").length, 2);
    assert.equal(files.length, 21);
    assert.equal(server.since(0).filter((q) => q.what === "manifest").length, 1);
    assert.ok(d.output.includes("app 1.0.0 1.0.0"));
  });

  test("no server at the url: the error says so in words, with the errno's name and number", async () => {
    const id = "refused-1";
    const { d, server } = await rig(id);
    // A port nothing listens on: the connection is refused (lwip raises ECONNRESET for the RST).
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    server.active = V1.sha;
    server.add(V1);
    const url = `http://127.0.0.1:${port}/device/app/${V1.sha}`;
    const stopped = nextAck(d, (a) => a.job === "j-refused" && a.error !== undefined);
    await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, "j-refused", V1, url), true);
    assert.deepEqual(await stopped, {
      job: "j-refused",
      error: `no connection to 127.0.0.1:${port} (ECONNRESET, errno 104)`,
      final: false,
    });
    assert.ok(d.output.includes("mpota: update boot for job j-refused"), "from the update boot");
  });

  test("a broker that stops answering during the update boot: it gives up after a keep-alive, the app starts, the agent resumes", async () => {
    const id = "mute-1";
    const relay = await MuteRelay.start(hooks.broker.url);
    cleanups.push(() => relay.close());
    const { d, server } = await rig(id, {
      broker: relay.url,
      config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200, KEEPALIVE: 2 },
    });
    const intoBoot = d.waitFor("reset", () => true);
    await send(id, server, V1, "j-mute");
    await intoBoot;
    relay.mute = true; // from the update boot's connection on
    const gaveUp = d.waitFor("stdout", (line) => line.includes("mpota: update boot:"), 30_000);
    const line = await gaveUp;
    relay.mute = false;
    assert.match(line, /110|ETIMEDOUT/, "a timeout, not a refusal");
    assert.deepEqual(server.requests.length, 0, "nothing fetched in the mute boot");
    // The app and the agent start; the agent asks again after its back-off and the update goes through.
    const up = settled(d, (app) => app.id === V1.sha);
    await up;
    assert.equal(fileRequests(server).length, 20);
    assert.deepEqual(acks(d, "j-mute").at(-1)?.done, true);
  });

  test("a power cut mid-fetch: at the next boot the job goes on from its record, keeping the files verified", async () => {
    const id = "power-1";
    const { d, server } = await rig(id);
    const off = new Promise<void>((resolve) => {
      server.hold = { file: "m10.py", run: () => void d.powerOff().then(resolve) };
    });
    await send(id, server, V1, "j-power");
    await off;
    const before = server.requests.length;
    assert.deepEqual(fileRequests(server).slice(0, 3), ["m01.py", "m02.py", "m03.py"]);
    const up = settled(d, (app) => app.id === V1.sha);
    await d.powerOn();
    await up;
    // After the cut: no manifest, m10.py (cut) and the files after it, nothing before.
    assert.deepEqual(fileRequests(server, before), [
      "m10.py",
      "m11.py",
      "m12.py",
      "m13.py",
      "m14.py",
      "m15.py",
      "m16.py",
      "m17.py",
      "m18.py",
      "m19.py",
      "main.py",
    ]);
    assert.equal(server.since(before).length, 11);
    const done = acks(d, "j-power").at(-1);
    assert.deepEqual([done?.files, done?.of, done?.done], [20, 20, true]);
  });
});

describe("the battery", () => {
  test("drops below MIN_VBAT mid-update: the board stops before the next file, and goes on once it is charged", async () => {
    const id = "batt-1";
    const { d, server } = await rig(id, { vbat: 3.9, minVbat: 3.3 });
    server.onFile = (path) => {
      if (path === "m03.py") d.vbat = 3.1;
    };
    const stopped = nextAck(d, (a) => a.job === "j-batt" && a.error !== undefined);
    await send(id, server, V1, "j-batt");
    assert.deepEqual(await stopped, { job: "j-batt", error: "battery low", final: false });
    assert.deepEqual(fileRequests(server), ["m01.py", "m02.py", "m03.py"]);
    assert.ok(d.fs.readFile("/mpota_job.0") ?? d.fs.readFile("/mpota_job.1"), "the job stays on flash");
    server.onFile = undefined;
    const up = settled(d, (app) => app.id === V1.sha);
    d.vbat = 3.9;
    await up;
    assert.equal(fileRequests(server).length, 20, "m01..m03 kept, the rest fetched once");
  });
});

describe("a wrong release is refused for good, the running app untouched", () => {
  test("a file whose bytes differ from its digest: final error, the job's record gone, the old app runs", async () => {
    const id = "digest-1";
    const { d, server } = await rig(id);
    await installed(id, d, server, V1, "j-v1");
    const rec = record(d.fs);
    server.corrupt = "m07.py";
    const failed = nextAck(d, (a) => a.job === "j-digest" && a.error !== undefined);
    await send(id, server, V2, "j-digest");
    assert.deepEqual(await failed, {
      job: "j-digest",
      error: "m07.py: its SHA-256 differs from the manifest's; discarded",
      final: true,
    });
    assert.deepEqual(record(d.fs), rec);
    assert.deepEqual(slotFiles(d.fs, rec?.active as string), V1.files);
    assert.equal(d.fs.readFile("/mpota_job.0") ?? d.fs.readFile("/mpota_job.1"), undefined);
    // Retained command or not, a reboot does not take the job up again.
    const again = settled(d, () => true);
    const from = server.requests.length;
    await d.powerOff();
    await d.powerOn();
    assert.equal(((await again).app as Record<string, unknown>).id, V1.sha);
    assert.equal(server.requests.length, from);
  });

  test("a manifest signed by a key the board does not trust: final error after the manifest alone", async () => {
    const id = "sig-1";
    const { d, server } = await rig(id);
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    const manifest = signAppManifest(
      {
        name: "thermostat",
        version: "1.0.0",
        boards: ["esp8266"],
        mpy: undefined,
        files: [{ path: "main.py", size: 4, sha256: sha256Hex("x=1\n") }],
      },
      other,
    ).bytes;
    const forged: AppRelease = {
      version: "1.0.0",
      files: { "main.py": "x=1\n" },
      manifest,
      sha: sha256Hex(manifest),
    };
    const failed = nextAck(d, (a) => a.job === "j-sig" && a.error !== undefined);
    await send(id, server, forged, "j-sig");
    const err = await failed;
    assert.equal(err.final, true);
    assert.match(String(err.error), /^manifest: signed by key [0-9a-f]{8}, which this board does not trust$/);
    assert.deepEqual(
      server.since(0).map((q) => q.what),
      ["manifest"],
    );
    assert.equal(record(d.fs), undefined);
  });
});

describe("the server refuses the files", () => {
  test("401 for a wrong password: a final error, nothing staged", async () => {
    const id = "http-1";
    const { d, server } = await rig(id, {
      config: { MQTT_USER: id, MQTT_PASSWORD: "not-it", RETRY_MS: 200 },
    });
    const denied = nextAck(d, (a) => a.job === "j-401" && a.error !== undefined);
    await send(id, server, V1, "j-401");
    assert.deepEqual(await denied, {
      job: "j-401",
      error: `the server refused /${V1.sha}/manifest: HTTP 401 Unauthorized`,
      final: true,
    });
    assert.deepEqual(
      server.since(0).map((q) => q.status),
      [401],
    );
    assert.equal(record(d.fs), undefined);
  });

  test("403 for a release that is not the device's active job", async () => {
    const id = "http-2";
    const { d, server } = await rig(id);
    const url = server.add(V1);
    server.active = V2.sha;
    const denied = nextAck(d, (a) => a.job === "j-403" && a.error !== undefined);
    await hooks.broker.publish(`mpota/${id}/cmd`, appCommand(signer, id, seq++, "j-403", V1, url), true);
    assert.deepEqual(await denied, {
      job: "j-403",
      error: `the server refused /${V1.sha}/manifest: HTTP 403 Forbidden`,
      final: true,
    });
  });
});

describe("commands the agent refuses", () => {
  test("replayed, forged, for another device: ignored, nothing fetched; a downgrade and a low battery: ready:false", async () => {
    const id = "cmd-1";
    const { d, server } = await rig(id, { vbat: 3.9, minVbat: 3.3 });
    const older = seq++; // signed before j-v2's, never sent: what an attacker may have captured
    await installed(id, d, server, V2, "j-v2");
    const from = server.requests.length;
    const acked = acks(d).length;
    const url = server.add(V1);
    server.active = V1.sha;
    // The very command that installed V2, again (as the broker hands it over after the reset).
    const replay = appCommand(signer, id, seq - 1, "j-v2", V2, server.add(V2));
    const old = appCommand(signer, id, older, "j-old", V1, url);
    const good = JSON.parse(appCommand(signer, id, seq++, "j-forged", V1, url)) as Record<string, unknown>;
    const forged = JSON.stringify({ ...good, url: "http://127.0.0.1:1/evil" });
    const other = appCommand(signer, "someone-else", seq++, "j-other", V1, url);
    // The command of the job just done is ignored without a note; the others each with its reason.
    // The agent takes commands in order: once the first note is out, it has seen the replay.
    await hooks.broker.publish(`mpota/${id}/cmd`, replay, true);
    for (const [c, why] of [
      [old, `mpota: ignored replayed cmd, seq ${older} <= ${seq - 3}`],
      [forged, `mpota: ignored cmd with a bad signature, seq ${seq - 2}`],
      [other, "mpota: ignored cmd for device someone-else"],
    ] as const) {
      const noted = d.waitFor("stdout", (l) => l === why);
      await hooks.broker.publish(`mpota/${id}/cmd`, c, true);
      await noted;
    }
    assert.deepEqual(
      d.output.filter((l) => l.includes("replayed")),
      [`mpota: ignored replayed cmd, seq ${older} <= ${seq - 3}`],
    );
    assert.equal(acks(d).length, acked);
    assert.equal(server.requests.length, from);

    const down = nextAck(d, (a) => a.job === "j-down");
    await send(id, server, V1, "j-down");
    assert.deepEqual(await down, {
      job: "j-down",
      ready: false,
      error: "downgrade refused: thermostat 1.0.0 is older than the installed 1.1.0 (allow the downgrade)",
    });
    d.vbat = 3.0;
    const low = nextAck(d, (a) => a.job === "j-low");
    await send(id, server, V1, "j-low", 1);
    assert.deepEqual(await low, { job: "j-low", ready: false, error: "battery low" });
    assert.equal(server.requests.length, from);
  });
});

describe("a sleepy board", () => {
  test("stops between files when its wake is over and goes on at the next wakes", async () => {
    const id = "sleepy-1";
    const server = await AppServer.start(id, PASSWORD);
    cleanups.push(() => server.close());
    const small = appRelease("1.0.0", {
      "a.py": 'A = "a"\n',
      "b.py": 'B = "b"\n',
      "main.py": 'import a, b\nprint("small", a.A, b.B)\n',
    });
    await send(id, server, small, "j-sleepy");
    // APP_WAKE_MS 0: every wake's time is over after one file.
    const d = appDevice(hooks.broker.url, id, signer, {
      sleepSeconds: 60,
      autoWake: false,
      config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, APP_WAKE_MS: 0 },
    });
    cleanups.push(() => d.close());
    let wakes = 0;
    d.on("deepsleep", () => {
      wakes++;
      void d.boot(ResetCause.DEEPSLEEP_RESET);
    });
    const up = nextState(d, (app) => app.id === small.sha, 60_000);
    await d.powerOn();
    await up;
    assert.equal(wakes, 2, "a file a wake, the third with the switch");
    assert.deepEqual(
      server.since(0).map((q) => q.what),
      ["manifest", "a.py", "b.py", "main.py"],
    );
    assert.ok(d.output.includes("small a b"));
  });
});
