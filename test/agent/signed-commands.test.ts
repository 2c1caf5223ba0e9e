import assert from "node:assert/strict";
import { constants, sign } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../../src/agent-host/agent-device-options.ts";
import { DeviceFilesystem, type FilesystemKind } from "../../src/agent-host/device-filesystem.ts";
import { buildFlash } from "../../src/agent-host/flash-source.ts";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import { ResetCause } from "../../src/agent-host/reset-cause.ts";
import { hasRtcMagic } from "../../src/firmware/rtc-memory.ts";
import { compareVersions } from "../../src/server/releases/version-order.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { CommandSigner, TestBroker } from "./support.ts";

// Contract v2 under MicroPython 1.27 (wasm), against a real broker: the agent
// obeys only commands signed by a key it trusts, for itself, with a counter
// above every one it accepted, and keeps that counter across resets, deep
// sleeps and power cuts. Every ignored command leaves the device as it was
// (no ack, no reset into OTA mode, no RTC magic, nothing written to flash)
// and prints a note.

const image = buildMicroPythonImage({ size: 48_000, seed: 7 });
const fw = imageIdentity(image);
const otherFw = imageIdentity(buildMicroPythonImage({ size: 52_000, seed: 8 }));

/** mpota's one version order, as the server's tests use it: [a, b, sign of compare(a, b)]. */
const versionTable = readFixtureText("version-order.json");
const versionRows = (JSON.parse(versionTable) as { cases: Array<[string, string, number]> }).cases;

/**
 * The trusted key, with a letter (a-f) in its id: "kid in capitals" below is no change at all for
 * an id of digits only (one key in 43), and the device then rightly took that command (a flake).
 */
function signerWithLetterInKid(): CommandSigner {
  for (;;) {
    const signer = new CommandSigner();
    if (/[a-f]/.test(signer.kid)) return signer;
  }
}
const trusted = signerWithLetterInKid();
const stranger = new CommandSigner();
const successor = new CommandSigner();

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

function device(options: Partial<AgentDeviceOptions> & { id: string }): AgentDevice {
  const d = new AgentDevice({
    broker: broker.url,
    flash: buildFlash(image),
    commandKeys: [trusted.modulusHex],
    ...options,
  });
  devices.push(d);
  return d;
}

/** A device that is on, checked in and waiting for commands. */
async function online(options: Partial<AgentDeviceOptions> & { id: string }): Promise<AgentDevice> {
  const d = device(options);
  const up = d.nextPublish("status");
  await d.powerOn();
  await up;
  return d;
}

const acks = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/ack")).map((m) => JSON.parse(m.payload.toString()));
const statuses = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/status")).map((m) => m.payload.toString());
const states = (d: AgentDevice) =>
  d.published.filter((m) => m.topic.endsWith("/state")).map((m) => JSON.parse(m.payload.toString()));

/** Publishes `payload` to the device and waits for its note; the device must be left as it was. */
async function ignored(d: AgentDevice, payload: string, note: RegExp): Promise<void> {
  const steps = d.fs.steps.length;
  const published = d.published.length;
  const rtc = Buffer.from(d.rtc);
  const printed = d.waitFor("stdout", (l) => note.test(l));
  await broker.publish(`mpota/${d.id}/cmd`, payload, false);
  const line = await printed;
  assert.match(line, /^mpota: ignored /);
  assert.equal(d.phase, "running", `${line}: the device stays up`);
  assert.deepEqual(Buffer.from(d.rtc), rtc, `${line}: RTC memory as it was (no OTA magic)`);
  assert.equal(hasRtcMagic(d.rtc), false);
  assert.deepEqual(d.published.slice(published), [], `${line}: nothing published (no ack)`);
  assert.equal(d.fs.steps.length, steps, `${line}: nothing written to flash`);
}

/** Publishes `payload` and waits for the reset into OTA mode; returns the ack. */
async function accepted(d: AgentDevice, payload: string, retain = false): Promise<Record<string, unknown>> {
  const ota = d.waitFor("ota");
  await broker.publish(`mpota/${d.id}/cmd`, payload, retain);
  const { rtc } = await ota;
  assert.equal(Buffer.from(rtc).toString(), "yaotaota");
  assert.equal(statuses(d).at(-1), "ota");
  return acks(d).at(-1);
}

/** After OTA mode, the app boots again (boot8266 consumed the magic); the image is the same. */
async function backFromOta(d: AgentDevice): Promise<void> {
  d.rtc = Buffer.from("zaotaota");
  const up = d.waitFor("published", (m) => m.topic.endsWith("/status") && m.payload.toString() === "online");
  await d.boot(ResetCause.SOFT_RESET);
  await up;
}

/** The base64 character with the same 2 high bits and stray low bits. */
const STRAY: Record<string, string> = { A: "B", Q: "R", g: "h", w: "x" };

/** A command signed over the exact bytes given, bypassing the server's field rules (as an attacker could). */
function rawSigned(signer: CommandSigner, command: Record<string, unknown>, message: string): string {
  const sig = sign("sha256", Buffer.from(message), {
    key: signer.privateKey,
    padding: constants.RSA_PKCS1_PADDING,
  });
  return JSON.stringify({ ...command, kid: signer.kid, sig: sig.toString("base64") });
}

describe("a valid signed command", () => {
  test("resets into OTA mode with the RTC magic; the seq is kept, so the retained command is not taken again after the reset or a deep sleep", async () => {
    const cmd = trusted.ota({ dev: "ok-1", job: "j-ok", fw: otherFw, seq: 7 });
    await broker.publish("mpota/ok-1/cmd", cmd, true);
    const d = device({ id: "ok-1", sleepSeconds: 60, autoWake: false });
    const ota = d.waitFor("ota");
    await d.powerOn();
    assert.equal(Buffer.from((await ota).rtc).toString(), "yaotaota");
    assert.deepEqual(acks(d), [{ job: "j-ok", ready: true, ip: "127.0.0.1", port: 8266 }]);
    assert.deepEqual(states(d)[0], {
      v: 2,
      fw,
      ip: "127.0.0.1",
      wake: "power",
      sleep: 60,
      seq: 0,
      keys: [trusted.kid],
      flash: 1_048_576,
      mem: states(d)[0].mem,
      ver: "v1.27.0 on 2025-12-10",
      rssi: -61,
    });

    // The update failed (same image): the app boots again and finds the same retained command.
    d.rtc = Buffer.from("zaotaota");
    let note = d.waitFor("stdout", (l) => l.includes("replayed"));
    let sleep = d.waitFor("deepsleep");
    await d.boot(ResetCause.SOFT_RESET);
    assert.equal(await note, "mpota: ignored replayed cmd, seq 7 <= 7");
    await sleep;
    assert.equal(states(d).at(-1).seq, 7);
    assert.equal(acks(d).length, 1);

    // After a deep sleep: still replayed, still one ack.
    note = d.waitFor("stdout", (l) => l.includes("replayed"));
    sleep = d.waitFor("deepsleep");
    await d.boot(ResetCause.DEEPSLEEP_RESET);
    assert.equal(await note, "mpota: ignored replayed cmd, seq 7 <= 7");
    await sleep;
    assert.equal(states(d).at(-1).wake, "deepsleep");
    assert.equal(acks(d).length, 1);
    assert.equal(Buffer.from(d.rtc).toString(), "zaotaota");

    // And after a power cut (RTC memory lost, flash kept).
    await d.powerOff();
    note = d.waitFor("stdout", (l) => l.includes("replayed"));
    await d.powerOn();
    assert.equal(await note, "mpota: ignored replayed cmd, seq 7 <= 7");
    assert.equal(acks(d).length, 1);
    await broker.publish("mpota/ok-1/cmd", "", true);
  });

  test("an older command recorded by an attacker is a replay once a newer one was accepted", async () => {
    const d = await online({ id: "rec-1" });
    const old = trusted.ota({ dev: "rec-1", job: "j-old", fw: otherFw, seq: 20 });
    await accepted(d, trusted.ota({ dev: "rec-1", job: "j-new", fw: otherFw, seq: 21 }));
    await backFromOta(d);
    assert.equal(states(d).at(-1).seq, 21);
    await ignored(d, old, /replayed cmd, seq 20 <= 21/);
    await ignored(
      d,
      trusted.ota({ dev: "rec-1", job: "j-new", fw: otherFw, seq: 21 }),
      /replayed cmd, seq 21 <= 21/,
    );
  });
});

describe("commands the device ignores, each with a note, leaving it unchanged", () => {
  test("forged, tampered, badly signed, unsigned and misaddressed commands; then a good one still works", async () => {
    const d = await online({ id: "att-1" });
    const good = (seq: number, extra: Record<string, unknown> = {}) => ({
      ...JSON.parse(trusted.ota({ dev: "att-1", job: "j-att", fw: otherFw, seq })),
      ...extra,
    });
    const cmd = good(5);
    const sig: string = cmd.sig;
    const raw = Buffer.from(sig, "base64");
    const cases: Array<[string, unknown, RegExp]> = [
      // Signed by another key: with that key's own kid, or claiming the trusted kid.
      [
        "forged, unknown kid",
        JSON.parse(stranger.ota({ dev: "att-1", job: "j-att", fw: otherFw, seq: 5 })),
        /signed by unknown key [0-9a-f]{8}$/,
      ],
      [
        "forged, trusted kid",
        {
          ...JSON.parse(stranger.ota({ dev: "att-1", job: "j-att", fw: otherFw, seq: 5 })),
          kid: trusted.kid,
        },
        /bad signature, seq 5$/,
      ],
      // Each signed field changed after signing.
      ["tampered job", { ...cmd, job: "j-evil" }, /bad signature, seq 5$/],
      ["tampered fw", { ...cmd, fw: "f".repeat(32) }, /bad signature/],
      ["tampered size", { ...cmd, size: 1 }, /bad signature/],
      ["tampered ver", { ...cmd, ver: "9.9.9" }, /bad signature/],
      ["tampered down", { ...cmd, down: 1 }, /bad signature/],
      ["tampered seq", { ...cmd, seq: 6 }, /bad signature, seq 6$/],
      // Signatures that are not one.
      ["truncated sig text", { ...cmd, sig: sig.slice(0, 200) }, /bad signature/],
      ["sig of 255 bytes", { ...cmd, sig: raw.subarray(0, 255).toString("base64") }, /bad signature/],
      [
        "sig of 257 bytes",
        { ...cmd, sig: Buffer.concat([raw, Buffer.of(0)]).toString("base64") },
        /bad signature/,
      ],
      ["sig with a space", { ...cmd, sig: `${sig.slice(0, 100)} ${sig.slice(101)}` }, /bad signature/],
      ["non-base64 sig", { ...cmd, sig: "!".repeat(sig.length) }, /bad signature/],
      // 256 bytes end in one byte "XY==": Y's low 4 bits must be 0; these decode to the same bytes.
      [
        "sig with stray bits",
        { ...cmd, sig: `${sig.slice(0, -3)}${STRAY[sig.at(-3) as string]}==` },
        /bad signature/,
      ],
      ["sig of zeros", { ...cmd, sig: Buffer.alloc(256).toString("base64") }, /bad signature/],
      ["sig above the modulus", { ...cmd, sig: Buffer.alloc(256, 0xff).toString("base64") }, /bad signature/],
      ["empty sig", { ...cmd, sig: "" }, /bad signature/],
      ["sig not a string", { ...cmd, sig: 12 }, /malformed cmd/],
      // Fields the contract does not allow, even where the signature would match.
      ["kid in capitals", { ...cmd, kid: trusted.kid.toUpperCase() }, /malformed cmd/],
      ["v 1 with a sig", { ...cmd, v: 1 }, /malformed cmd/],
      ["seq 0", { ...cmd, seq: 0 }, /malformed cmd/],
      ["seq 2^53", { ...cmd, seq: 2 ** 53 }, /malformed cmd/],
      ["down true", { ...cmd, down: true }, /malformed cmd/],
      ["size missing", (({ size: _s, ...rest }) => rest)(cmd), /malformed cmd/],
      ["op reboot", { ...cmd, op: "reboot" }, /malformed cmd/],
      // No signature at all (a contract v1 command), ALLOW_UNSIGNED being off.
      [
        "unsigned",
        { op: "ota", job: "j-v1", fw: otherFw, size: 600_000 },
        /unsigned cmd j-v1 \(ALLOW_UNSIGNED is off\)$/,
      ],
      // Properly signed, for another device.
      [
        "another device's",
        JSON.parse(trusted.ota({ dev: "att-2", job: "j-att", fw: otherFw, seq: 5 })),
        /cmd for device att-2$/,
      ],
    ];
    for (const [, payload, note] of cases) await ignored(d, JSON.stringify(payload), note);

    // A job id with a newline would shift the signed lines: refused even when signed over exactly those bytes.
    const shifted = {
      v: 2,
      op: "ota",
      dev: "att-1",
      seq: 5,
      job: "j\nx",
      fw: otherFw,
      size: 1,
      ver: "1",
      down: 0,
    };
    await ignored(
      d,
      rawSigned(trusted, shifted, `mpota-cmd/2\natt-1\n5\nota\nj\nx\n${otherFw}\n1\n1\n0`),
      /malformed cmd/,
    );
    // A seq written as 5.0 is not an integer, whatever was signed.
    await ignored(d, JSON.stringify(cmd).replace('"seq":5', '"seq":5.0'), /malformed cmd/);

    assert.deepEqual(
      states(d).map((s) => s.seq),
      [0],
    );
    const ack = await accepted(d, JSON.stringify(cmd));
    assert.deepEqual(ack, { job: "j-att", ready: true, ip: "127.0.0.1", port: 8266 });
    assert.equal(acks(d).length, 1);
  });

  test("a counter from the future: more than 100000 above the highest accepted", async () => {
    const d = await online({ id: "fut-1" });
    await ignored(
      d,
      trusted.ota({ dev: "fut-1", job: "j-f", fw: otherFw, seq: 100_001 }),
      /from the future, seq 100001 > 0 \+ 100000$/,
    );
    await ignored(
      d,
      trusted.ota({ dev: "fut-1", job: "j-f", fw: otherFw, seq: 2 ** 53 - 1 }),
      /from the future/,
    );
    await accepted(d, trusted.ota({ dev: "fut-1", job: "j-f", fw: otherFw, seq: 100_000 }));
    await backFromOta(d);
    assert.equal(states(d).at(-1).seq, 100_000);
    await ignored(
      d,
      trusted.ota({ dev: "fut-1", job: "j-g", fw: otherFw, seq: 200_001 }),
      /from the future, seq 200001 > 100000 \+ 100000$/,
    );
    await accepted(d, trusted.ota({ dev: "fut-1", job: "j-g", fw: otherFw, seq: 200_000 }));
  });

  test("a command for the running firmware is not acted on, but its seq is recorded", async () => {
    const d = await online({ id: "same-2" });
    const note = d.waitFor("stdout", (l) => l.includes("running firmware"));
    await broker.publish(
      "mpota/same-2/cmd",
      trusted.ota({ dev: "same-2", job: "j-same", fw, seq: 3 }),
      false,
    );
    assert.equal(await note, "mpota: cmd j-same is for the running firmware, ignored");
    assert.deepEqual(acks(d), []);
    await ignored(
      d,
      trusted.ota({ dev: "same-2", job: "j-same", fw: otherFw, seq: 3 }),
      /replayed cmd, seq 3 <= 3/,
    );
  });
});

describe("downgrades", () => {
  test("an older version without down=1 is refused with ack ready:false; with down=1 it is taken, and becomes the new floor", async () => {
    const d = await online({ id: "down-1" });
    const ota = (seq: number, ver: string, down: 0 | 1) =>
      trusted.ota({ dev: "down-1", job: `j-${seq}`, fw: otherFw, seq, ver, down });
    await accepted(d, ota(1, "1.4.0", 0));
    await backFromOta(d);

    const ack = d.nextPublish("ack");
    const steps = d.fs.steps.length;
    await broker.publish("mpota/down-1/cmd", ota(2, "1.3.9", 0), false);
    assert.deepEqual(JSON.parse((await ack).payload.toString()), {
      job: "j-2",
      ready: false,
      error: "downgrade refused: 1.3.9 is older than 1.4.0 (allow the downgrade)",
    });
    assert.equal(d.phase, "running");
    assert.equal(Buffer.from(d.rtc).toString(), "zaotaota");
    assert.notEqual(statuses(d).at(-1), "ota");
    assert.equal(d.fs.steps.length > steps, true, "the refused command's seq is recorded before the ack");
    await ignored(d, ota(2, "1.3.9", 0), /replayed cmd, seq 2 <= 2/);

    // The server's order (docs/versions.md): a release candidate comes before its release.
    const refused = d.nextPublish("ack");
    await broker.publish("mpota/down-1/cmd", ota(3, "1.4.0-rc2", 0), false);
    assert.equal(
      JSON.parse((await refused).payload.toString()).error,
      "downgrade refused: 1.4.0-rc2 is older than 1.4.0 (allow the downgrade)",
    );

    assert.deepEqual(await accepted(d, ota(4, "1.3.9", 1)), {
      job: "j-4",
      ready: true,
      ip: "127.0.0.1",
      port: 8266,
    });
    await backFromOta(d);
    // The owner's downgrade moved the floor: 1.4.0 is an upgrade again.
    await accepted(d, ota(5, "1.4.0", 0));
    await backFromOta(d);
    await accepted(d, ota(6, "1.10", 0));
  });

  test("the version order, on the device: every row of test/fixtures/version-order.json, both ways round", async () => {
    // The server decides "older" with src/server/releases/version-order.ts and the device with
    // mpota_cmd.older; they must agree, or a device refuses what the server calls an upgrade.
    const main = `import json, mpota_cmd
with open("version-order.json") as f:
    rows = json.loads(f.read())["cases"]
for a, b, _ in rows:
    print(json.dumps([a, b, mpota_cmd.older(a, b), mpota_cmd.older(b, a)]))
print("done")`;
    const d = device({
      id: "vers-1",
      main,
      autoRestart: false,
      files: { "version-order.json": versionTable },
    });
    const ended = d.waitFor("ended");
    await d.powerOn();
    assert.deepEqual(await ended, { kind: "exit" }, d.output.join("\n"));
    assert.equal(d.output.at(-1), "done");
    const answers = d.output.filter((l) => l.startsWith("[")).map((l) => JSON.parse(l));
    assert.ok(versionRows.length >= 20);
    assert.equal(answers.length, versionRows.length);
    versionRows.forEach(([a, b, sign], i) => {
      assert.deepEqual(answers[i], [a, b, sign < 0, sign > 0], `row ${i}: ${a} vs ${b} should be ${sign}`);
    });
  });

  test("the version order, on the device: the same answers as the server's compareVersions on 2000 made-up pairs", async () => {
    // Every kind of character the rules tell apart (digits, zeros, letters of either case,
    // v, the separators - ~ + . _, spaces), in random order and length; seeded, so a failure repeats.
    const alphabet = "0019aAbvVzZ.._--~++ \t";
    let seed = 14;
    const next = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const made = () => Array.from({ length: next(11) }, () => alphabet[next(alphabet.length)]).join("");
    const pairs = Array.from({ length: 2000 }, (): [string, string] => [made(), made()]);
    const main = `import json, mpota_cmd
with open("pairs.json") as f:
    pairs = json.loads(f.read())  # json.load(f) would read byte by byte, a host call each
print("".join("%d%d" % (mpota_cmd.older(a, b), mpota_cmd.older(b, a)) for a, b in pairs))`;
    const d = device({
      id: "vers-2",
      main,
      autoRestart: false,
      files: { "pairs.json": JSON.stringify(pairs) },
    });
    const ended = d.waitFor("ended");
    await d.powerOn();
    assert.deepEqual(await ended, { kind: "exit" }, d.output.join("\n"));
    const answers = d.output.at(-1) ?? "";
    assert.equal(answers.length, 2 * pairs.length, `the device printed ${answers.slice(0, 80)}`);
    pairs.forEach(([a, b], i) => {
      const sign = Math.sign(compareVersions(a, b));
      const expected = `${sign < 0 ? 1 : 0}${sign > 0 ? 1 : 0}`;
      assert.equal(answers.slice(2 * i, 2 * i + 2), expected, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    });
  });
});

describe("key rotation", () => {
  test("a signed keys command replaces CMD_KEYS, also after a power cut; old-key commands are then ignored", async () => {
    const d = await online({ id: "rot-1" });
    assert.deepEqual(states(d)[0].keys, [trusted.kid]);
    // A keys command signed by a key the device does not trust changes nothing.
    await ignored(d, stranger.keys("rot-1", [stranger.modulusHex], 1), /signed by unknown key/);

    const state = d.nextPublish("state");
    await broker.publish("mpota/rot-1/cmd", trusted.keys("rot-1", [successor.modulusHex], 2), false);
    const rotated = JSON.parse((await state).payload.toString());
    assert.deepEqual([rotated.v, rotated.seq, rotated.keys], [2, 2, [successor.kid]]);
    assert.deepEqual(acks(d), []);

    await ignored(
      d,
      trusted.ota({ dev: "rot-1", job: "j-old", fw: otherFw, seq: 3 }),
      new RegExp(`signed by unknown key ${trusted.kid}$`),
    );
    // The config still names the old key, but the stored rotation wins after a power cut too.
    await d.powerOff();
    const up = d.waitFor(
      "published",
      (m) => m.topic.endsWith("/status") && m.payload.toString() === "online",
    );
    await d.powerOn();
    await up;
    assert.deepEqual(states(d).at(-1).keys, [successor.kid]);
    assert.equal(states(d).at(-1).seq, 2);
    await accepted(d, successor.ota({ dev: "rot-1", job: "j-new", fw: otherFw, seq: 4 }));
  });

  test("keys commands that break the rules are ignored: more than 3 moduli, not lowercase hex", async () => {
    const d = await online({ id: "rot-2" });
    const four = [trusted, stranger, successor, new CommandSigner()].map((s) => s.modulusHex);
    const keys4 = { v: 2, op: "keys", dev: "rot-2", seq: 1, keys: four };
    await ignored(
      d,
      rawSigned(trusted, keys4, `mpota-cmd/2\nrot-2\n1\nkeys\n${four.join(",")}`),
      /malformed cmd/,
    );
    const upper = { v: 2, op: "keys", dev: "rot-2", seq: 1, keys: [successor.modulusHex.toUpperCase()] };
    await ignored(
      d,
      rawSigned(trusted, upper, `mpota-cmd/2\nrot-2\n1\nkeys\n${upper.keys[0]}`),
      /malformed cmd/,
    );
    // A rotation to three keys at once: each of them is trusted afterwards.
    const state = d.nextPublish("state");
    await broker.publish("mpota/rot-2/cmd", trusted.keys("rot-2", four.slice(0, 3), 2), false);
    assert.deepEqual(JSON.parse((await state).payload.toString()).keys, [
      trusted.kid,
      stranger.kid,
      successor.kid,
    ]);
    await accepted(d, stranger.ota({ dev: "rot-2", job: "j-s", fw: otherFw, seq: 3 }));
  });
});

describe("CMD_KEYS", () => {
  test("taken as openssl prints the modulus (capitals), even as a lone string; none at all is warned about", async () => {
    const d = await online({ id: "cfg-1", config: { CMD_KEYS: trusted.modulusHex.toUpperCase() } });
    assert.deepEqual(states(d)[0].keys, [trusted.kid]);
    await accepted(d, trusted.ota({ dev: "cfg-1", job: "j-cfg", fw: otherFw, seq: 1 }));

    const none = await online({ id: "cfg-2", commandKeys: [] });
    assert.ok(
      none.output.includes("mpota: no CMD_KEYS, every command will be ignored"),
      none.output.join("\n"),
    );
    await ignored(
      none,
      trusted.ota({ dev: "cfg-2", job: "j-cfg", fw: otherFw, seq: 1 }),
      /signed by unknown key/,
    );
  });
});

describe("ALLOW_UNSIGNED", () => {
  test("with it, an unsigned (v1) command is obeyed; a signed one must still verify", async () => {
    const d = await online({ id: "v1-1", allowUnsigned: true, commandKeys: [] });
    assert.deepEqual(states(d)[0].keys, []);
    await ignored(d, trusted.ota({ dev: "v1-1", job: "j-s", fw: otherFw, seq: 1 }), /signed by unknown key/);
    const ack = await accepted(
      d,
      JSON.stringify({ op: "ota", job: "j-v1", fw: otherFw.toUpperCase(), size: 1 }),
    );
    assert.deepEqual(ack, { job: "j-v1", ready: true, ip: "127.0.0.1", port: 8266 });
    assert.equal(d.fs.steps.length, 0, "unsigned commands have no seq to record");
  });
});

describe("the record of the highest seq survives a power cut at any step", () => {
  for (const kind of ["littlefs", "fat"] as const satisfies FilesystemKind[]) {
    test(`${kind}: a cut before any write leaves the last record or the new one, and a command is acted on only once recorded`, async () => {
      // A board that has recorded seq 1 and seq 2 (one in each copy of the record).
      const prepared = new DeviceFilesystem({ kind });
      {
        const d = await online({ id: `cut-${kind}`, filesystem: prepared });
        for (const seq of [1, 2]) {
          const note = d.waitFor("stdout", (l) => l.includes("running firmware"));
          await broker.publish(
            `mpota/${d.id}/cmd`,
            trusted.ota({ dev: d.id, job: `j-${seq}`, fw, seq }),
            false,
          );
          await note;
        }
        await d.powerOff();
        devices.splice(devices.indexOf(d), 1);
        assert.deepEqual(
          prepared.files().filter((f) => f.startsWith("/mpota_seq.")),
          ["/mpota_seq.0", "/mpota_seq.1"],
        );
      }
      const update = trusted.ota({ dev: `cut-${kind}`, job: "j-3", fw: otherFw, seq: 3 });
      // Cut before the first, second, ... filesystem step the device takes for seq 3, until it gets through.
      let cuts = 0;
      for (let k = 0; ; k++) {
        const fs = prepared.clone();
        const d = device({ id: `cut-${kind}`, filesystem: fs });
        await broker.publish(`mpota/${d.id}/cmd`, update, true);
        let taken = 0;
        fs.beforeStep = () => taken++ === k;
        const outcome = new Promise<{ cut: FsStep | undefined }>((resolve) => {
          d.once("powerCut", (step) => resolve({ cut: step }));
          d.once("ota", () => resolve({ cut: undefined }));
        });
        await d.powerOn();
        const first = await outcome;
        if (first.cut === undefined) {
          // No cut left: the record was written (seq 3), then the ack, then the reset into OTA mode.
          assert.equal(d.fs.steps.at(-1)?.op, "commit");
          assert.deepEqual(
            acks(d).map((a) => a.job),
            ["j-3"],
          );
          break;
        }
        cuts++;
        assert.deepEqual(
          acks(d),
          [],
          `cut before ${JSON.stringify(first.cut)}: no ack before the record is on flash`,
        );
        // Power back on: the last record (seq 2) is intact, and the retained command is taken again.
        fs.beforeStep = undefined;
        const state = d.nextPublish("state");
        const again = d.waitFor("ota");
        await d.powerOn();
        assert.equal(
          JSON.parse((await state).payload.toString()).seq,
          2,
          `after a cut before ${JSON.stringify(first.cut)}`,
        );
        await again;
        assert.deepEqual(
          acks(d).map((a) => a.job),
          ["j-3"],
        );
        const st = d.nextPublish("state");
        d.rtc = Buffer.from("zaotaota");
        await d.boot(ResetCause.SOFT_RESET);
        assert.equal(JSON.parse((await st).payload.toString()).seq, 3);
        await d.close();
        devices.splice(devices.indexOf(d), 1);
      }
      // FAT: truncate, then commit; LittleFS: the commit alone (the old content stays until then).
      assert.equal(cuts, kind === "fat" ? 2 : 1);
      await broker.publish(`mpota/cut-${kind}/cmd`, "", true);
    });
  }
});
