import assert from "node:assert/strict";
import { chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connectAsync } from "mqtt";
import { hashSecret, newSecret, verifySecret } from "../../src/server/mqtt/credentials.ts";
import { openStorage } from "../../src/server/storage/open-storage.ts";
import { MOSQUITTO_SKIP, runMosquitto } from "../server/support/brokers.ts";
import { listDir, makeTempDir, runCli, startCliProcess } from "../support/cli.ts";

const devices = [
  { id: "sim-2", secret: newSecret() },
  { id: "sim-1", secret: newSecret() },
];

async function provision(data: string): Promise<void> {
  const storage = await openStorage({ dataDir: data });
  try {
    for (const d of devices) {
      await storage.credentials.add({ deviceId: d.id, hash: hashSecret(d.secret), at: Date.now() });
    }
  } finally {
    await storage.close();
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;

/** A group this process may give its files other than its own (root: any), or undefined. */
function otherGroup(): number | undefined {
  const own = process.getgid?.();
  if (process.getuid?.() === 0) return own === 65534 ? 65533 : 65534;
  return process.getgroups?.().find((g) => g !== own);
}

describe("mpota broker-config mosquitto", () => {
  const t = makeTempDir("mpota-broker-config-");
  const data = join(t.dir, "data");
  const out = join(t.dir, "mosquitto");
  before(() => provision(data));
  after(() => t.remove());

  it("writes the password, ACL and configuration files for the registry's devices, and says what to do", async () => {
    const r = await runCli(["broker-config", "mosquitto", "--data", data, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual(listDir(out), [
      "mpota-devices.passwd",
      "mpota-server.passwd",
      "mpota.acl",
      "mpota.conf",
    ]);
    for (const name of listDir(out)) assert.equal(mode(join(out, name)), 0o640, name);
    const secretFile = join(data, "mqtt-server-secret");
    assert.equal(mode(secretFile), 0o600);
    const secret = readFileSync(secretFile, "utf8").trim();
    const token = readFileSync(join(data, "admin-token"), "utf8").trim();

    const passwords = (file: string) =>
      new Map(
        readFileSync(join(out, file), "utf8")
          .split("\n")
          .filter((l) => l !== "" && !l.startsWith("#"))
          .map((l) => l.split(":") as [string, string]),
      );
    const deviceLines = passwords("mpota-devices.passwd");
    assert.deepEqual([...deviceLines.keys()], ["sim-1", "sim-2"]);
    for (const d of devices) assert.ok(verifySecret(d.secret, deviceLines.get(d.id) as string), d.id);
    const serverLines = passwords("mpota-server.passwd");
    assert.deepEqual([...serverLines.keys()], ["mpota-server", "mpota-admin"]);
    assert.ok(verifySecret(secret, serverLines.get("mpota-server") as string));
    assert.ok(verifySecret(token, serverLines.get("mpota-admin") as string));
    const acl = readFileSync(join(out, "mpota.acl"), "utf8");
    assert.match(
      acl,
      /^user sim-1\ntopic read mpota\/sim-1\/cmd\nuser sim-2\ntopic read mpota\/sim-2\/cmd$/m,
    );
    assert.match(acl, /^topic write homeassistant\/status$/m);
    assert.match(
      readFileSync(join(out, "mpota.conf"), "utf8"),
      new RegExp(`^password_file ${out}/mpota-devices\\.passwd$`, "m"),
    );

    assert.match(
      r.stdout,
      new RegExp(`^Wrote Mosquitto's files for 2 devices \\(base topic mpota\\) to ${out}:`),
    );
    assert.match(
      r.stdout,
      /^ {2}per_listener_settings true\n {2}check_retain_source true\n {2}listener 1883\n/m,
    );
    assert.match(r.stdout, /^ {2}listener 1884 127\.0\.0\.1$/m);
    assert.ok(
      r.stdout.includes(
        `  mpota serve --mqtt mqtt://127.0.0.1:1884 --mqtt-username mpota-server --mqtt-password-file ${secretFile} --data ${data}\n`,
      ),
      r.stdout,
    );
    assert.ok(
      r.stdout.includes(`--mqtt-username mpota-admin --mqtt-password-file ${join(data, "admin-token")}`),
    );
    assert.match(r.stdout, /Run this command again after `mpota devices add`/);
    assert.match(r.stdout, /reload Mosquitto \(sudo systemctl reload mosquitto, or kill -HUP its pid\)/);
    assert.doesNotMatch(r.stdout, new RegExp(secret));
    assert.doesNotMatch(r.stdout, new RegExp(token));
  });

  it("replaces its own files on the next run, keeping the server's secret", async () => {
    const secret = readFileSync(join(data, "mqtt-server-secret"), "utf8");
    const before = readFileSync(join(out, "mpota-server.passwd"), "utf8");
    // The group Mosquitto reads the files through (chgrp mosquitto) survives the rewrite.
    const group = otherGroup();
    if (group !== undefined) for (const name of listDir(out)) chownSync(join(out, name), -1, group);
    const r = await runCli(["broker-config", "mosquitto", "--data", data, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(data, "mqtt-server-secret"), "utf8"), secret);
    const now = readFileSync(join(out, "mpota-server.passwd"), "utf8");
    assert.notEqual(now, before, "hashed again with a fresh salt");
    assert.ok(verifySecret(secret.trim(), /^mpota-server:(.*)$/m.exec(now)?.[1] as string));
    assert.deepEqual(listDir(out), [
      "mpota-devices.passwd",
      "mpota-server.passwd",
      "mpota.acl",
      "mpota.conf",
    ]);
    for (const name of listDir(out)) {
      assert.equal(mode(join(out, name)), 0o640, name);
      if (group !== undefined) assert.equal(statSync(join(out, name)).gid, group, name);
    }
  });

  it("refuses to overwrite a file it did not write, unless --force", async () => {
    const other = join(t.dir, "etc");
    mkdirSync(other);
    const mine = "user alice\ntopic readwrite alice/#\n";
    writeFileSync(join(other, "mpota.acl"), mine);
    const r = await runCli(["broker-config", "mosquitto", "--data", data, "--out", other]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      `mpota: ${other}/mpota.acl exists and was not written by \`mpota broker-config mosquitto\`; mpota does not overwrite it. Choose another --out folder, or pass --force to replace it.\n`,
    );
    assert.deepEqual(listDir(other), ["mpota.acl"], "nothing written");
    assert.equal(readFileSync(join(other, "mpota.acl"), "utf8"), mine);

    const forced = await runCli(["broker-config", "mosquitto", "--data", data, "--out", other, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      readFileSync(join(other, "mpota.acl"), "utf8"),
      /^# Written by `mpota broker-config mosquitto`/,
    );
  });

  it("refuses bad options before it writes anything", async () => {
    const fresh = join(t.dir, "fresh");
    for (const [args, message] of [
      [["--base", "a/#"], /"a\/#" cannot be the base topic/],
      [["--ha-prefix", "mpota/ha"], /The Home Assistant prefix mpota\/ha lies inside the base topic mpota/],
      [["--device-port", "1884"], /need two different ports \(both are 1884\)/],
      [["--server-port", "70000"], /The server listener's port must be between 1 and 65535/],
    ] as const) {
      const r = await runCli(["broker-config", "mosquitto", "--data", data, "--out", fresh, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    const missing = await runCli(["broker-config", "mosquitto", "--data", data]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /required option '--out <dir>' not specified/);
    assert.deepEqual(listDir(t.dir).includes("fresh"), false);
  });
});

describe("mpota broker-config mosquitto, then Mosquitto and mpota serve as it says", {
  skip: MOSQUITTO_SKIP,
}, () => {
  it("serves a device and the CLI through Mosquitto configured by the files", async () => {
    const t = makeTempDir("mpota-broker-config-run-");
    const data = join(t.dir, "data");
    const out = join(t.dir, "mosquitto");
    await provision(data);
    let printed = "";
    const broker = await runMosquitto(t.dir, 2, async ([devicePort, serverPort]) => {
      const r = await runCli([
        "broker-config",
        "mosquitto",
        "--data",
        data,
        "--out",
        out,
        "--device-port",
        String(devicePort),
        "--device-host",
        "127.0.0.1",
        "--server-port",
        String(serverPort),
      ]);
      assert.equal(r.code, 0, r.stderr);
      printed = r.stdout;
      // As on Debian: the folder holding mpota.conf is included as it was written.
      return [`include_dir ${out}`];
    });
    const [devicePort, serverPort] = broker.ports as [number, number];
    const serveLine = /^ {2}mpota serve (.*)$/m.exec(printed)?.[1];
    assert.ok(serveLine, printed);
    assert.ok(!serveLine.includes("'"), serveLine);
    let ended: { stderr: string } | undefined;
    const server = startCliProcess(["serve", ...serveLine.split(" "), "--no-http", "--log-level", "warn"], {
      cwd: t.dir,
    });
    try {
      await server.waitForOutput("mpota server running");
      const sim = devices.find((d) => d.id === "sim-1") as { id: string; secret: string };
      const device = await connectAsync(`mqtt://127.0.0.1:${devicePort}`, {
        username: sim.id,
        password: sim.secret,
        clientId: sim.id,
        reconnectPeriod: 0,
      });
      await device.publishAsync(
        "mpota/sim-1/state",
        JSON.stringify({ v: 1, fw: "a".repeat(32), ip: "192.168.1.20" }),
        { qos: 1, retain: true },
      );
      await device.endAsync();
      const cliLine = /^ {2}mpota devices (.*)$/m.exec(printed)?.[1] as string;
      assert.ok(cliLine.includes(`mqtt://127.0.0.1:${serverPort}`), cliLine);
      let listed = "";
      for (let i = 0; i < 50 && !listed.includes("sim-1"); i++) {
        const r = await runCli(["devices", ...cliLine.split(" "), "--json"]);
        assert.equal(r.code, 0, r.stderr);
        listed = r.stdout;
        if (!listed.includes("sim-1")) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.match(listed, /"id": "sim-1"/);
    } finally {
      server.kill("SIGTERM");
      ended = await server.done;
      await broker.stop();
      t.remove();
    }
    assert.doesNotMatch(ended.stderr, /error|warn/i, ended.stderr);
  });
});
