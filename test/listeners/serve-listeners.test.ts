import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { MemoryIo } from "../../src/cli/io.ts";
import { serveCommand } from "../../src/cli/serve.ts";
import { eventually } from "../server/support/wait.ts";
import { type CliResult, makeTempDir, runCli, startCliProcess } from "../support/cli.ts";
import { connectTestClient, issueCert, makeCa, opensslFingerprint } from "./support.ts";

/** The CLI's login to the broker of a server with this data directory: mpota-admin and its admin token. */
const admin = (dataDir: string) => ({
  username: "mpota-admin",
  password: readFileSync(join(dataDir, "admin-token"), "utf8").trim(),
});

/** This machine's IPv4 addresses as a 0.0.0.0 listener takes them: the network's first, loopback last. */
function ipv4Hosts(): string[] {
  const outside: string[] = [];
  const inside: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const e of list ?? []) if (e.family === "IPv4") (e.internal ? inside : outside).push(e.address);
  }
  return [...outside, ...inside];
}

const quoted = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** `node bin/mpota.js serve ARGS` until its banner is out; `stop` sends SIGINT, as Ctrl-C does. */
async function startServe(
  args: string[],
  cwd: string,
): Promise<{ stderr: string; stop: () => Promise<CliResult> }> {
  const serve = startCliProcess(["serve", ...args], { cwd });
  await serve.waitForOutput("Stop with Ctrl-C.");
  return {
    stderr: serve.output().stderr,
    stop: async () => {
      serve.kill("SIGINT");
      const { code, stdout, stderr } = await serve.done;
      return { code, stdout, stderr };
    },
  };
}

/** The URLs a banner line lists, and the port it says the listener has. */
function banner(stderr: string, pattern: RegExp): { urls: string[]; port: string } {
  const match = pattern.exec(stderr);
  assert.ok(match, `no line like ${pattern} in:\n${stderr}`);
  return { urls: (match[1] ?? "").split(" "), port: match[2] ?? "" };
}

/** `mpota serve ARGS` in this process, as main() runs it; stopped (SIGINT) if it starts after all. */
async function serveFails(args: string[], cwd: string): Promise<CliResult> {
  const timer = setTimeout(() => process.emit("SIGINT", "SIGINT"), 20_000);
  try {
    return await runCli(["serve", "--log-level", "silent", ...args], { cwd });
  } finally {
    clearTimeout(timer);
  }
}

async function refused(url: string): Promise<string> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(3000) });
    return "answered";
  } catch (error) {
    return ((error as Error).cause as { code?: string } | undefined)?.code ?? String(error);
  }
}

describe("mpota serve's listeners, as a user sees them", () => {
  const hosts = ipv4Hosts();
  const lan = hosts.find((h) => !h.startsWith("127."));

  it("with the defaults and a self-signed certificate: the addresses each listener really has, the fingerprint, the same certificate after a restart", async () => {
    const t = makeTempDir("mpota-serve-tls-");
    const data = join(t.dir, "data");
    const certFile = join(data, "broker-cert.pem");
    const ports = ["--mqtt-port", "0", "--mqtts-port", "0", "--http-port", "0"];
    try {
      // First start: dashboard on loopback, the broker on every address, TLS with a pair made now.
      let serve = await startServe(["--data", data, ...ports, "--mqtt-tls-self-signed"], t.dir);
      let stderr = serve.stderr;
      const fingerprint = opensslFingerprint(certFile);
      const pinned = readFileSync(certFile);
      const dashboard = banner(
        stderr,
        /^Dashboard: (http:\/\/127\.0\.0\.1:\d+\/) \(listens on 127\.0\.0\.1 port (\d+): this machine only; --http-host 0\.0\.0\.0 opens it to the network\)$/m,
      );
      assert.deepEqual(dashboard.urls, [`http://127.0.0.1:${dashboard.port}/`]);
      assert.match(
        stderr,
        new RegExp(
          `^Devices fetch ESP32 firmware at http://127\\.0\\.0\\.1:${dashboard.port}/device/firmware/<fw> and apps below http://127\\.0\\.0\\.1:${dashboard.port}/device/app/<sha>/ \\(this machine only: --http-host 0\\.0\\.0\\.0, and --device-url when devices reach it under another address\\)$`,
          "m",
        ),
      );
      const plain = banner(
        stderr,
        /^MQTT broker: (.+) \(listens on 0\.0\.0\.0 port (\d+): every IPv4 address of this machine\)$/m,
      );
      assert.deepEqual(
        plain.urls,
        hosts.map((h) => `mqtt://${h}:${plain.port}`),
      );
      const tls = banner(
        stderr,
        /^MQTT broker with TLS: (.+) \(listens on 0\.0\.0\.0 port (\d+): every IPv4 address of this machine\)$/m,
      );
      assert.deepEqual(
        tls.urls,
        hosts.map((h) => `mqtts://${h}:${tls.port}`),
      );
      assert.match(
        stderr,
        new RegExp(
          `^  certificate ${quoted(certFile)} \\(self-signed, made now\\), SHA-256 fingerprint ${fingerprint}\\n  clients trust it with --mqtt-ca ${quoted(certFile)} \\(mosquitto_sub --cafile, an ESP32's cadata\\)$`,
          "m",
        ),
      );
      assert.doesNotMatch(stderr, /^Note:/m);
      // Every printed URL works: plain ones, and TLS ones with the certificate as the only trust.
      for (const url of plain.urls) (await connectTestClient(url, admin(data))).end(true);
      for (const url of tls.urls) (await connectTestClient(url, { ca: pinned, ...admin(data) })).end(true);
      assert.equal((await fetch(dashboard.urls[0] ?? "")).status, 200);
      if (lan !== undefined) assert.equal(await refused(`http://${lan}:${dashboard.port}/`), "ECONNREFUSED");
      let run = await serve.stop();
      assert.equal(run.code, 0, run.stderr);

      // Second start: the same certificate; the dashboard opened to the network on purpose.
      serve = await startServe(
        ["--data", data, ...ports, "--mqtt-tls-self-signed", "--http-host", "0.0.0.0"],
        t.dir,
      );
      stderr = serve.stderr;
      assert.match(
        stderr,
        new RegExp(
          `^  certificate ${quoted(certFile)} \\(self-signed\\), SHA-256 fingerprint ${fingerprint}$`,
          "m",
        ),
      );
      const open = banner(
        stderr,
        /^Dashboard: (.+) \(listens on 0\.0\.0\.0 port (\d+): every IPv4 address of this machine\)$/m,
      );
      assert.deepEqual(
        open.urls,
        hosts.map((h) => `http://${h}:${open.port}/`),
      );
      assert.match(
        stderr,
        /^Note: The dashboard is open to the network over plain HTTP: the admin token you log in with and the session cookie cross it unencrypted, and whoever reads that traffic can push firmware to every device\. Use it only on a network you trust, or keep the default \(127\.0\.0\.1\) and reach it through an SSH tunnel or an HTTPS proxy \(docs\/security-tls\.md\)\.$/m,
      );
      for (const url of open.urls) assert.equal((await fetch(url)).status, 200, url);
      const again = banner(stderr, /^MQTT broker with TLS: (.+) \(listens on 0\.0\.0\.0 port (\d+)/m);
      for (const url of again.urls) (await connectTestClient(url, { ca: pinned, ...admin(data) })).end(true);
      run = await serve.stop();
      assert.equal(run.code, 0, run.stderr);
    } finally {
      t.remove();
    }
  });

  it("keeps plain MQTT to this machine when asked, and says devices on the network cannot use it", async () => {
    const t = makeTempDir("mpota-serve-tls-");
    const io = new MemoryIo();
    let stop: () => void = () => undefined;
    try {
      const serving = serveCommand(
        {
          data: join(t.dir, "data"),
          mqttHost: "127.0.0.1",
          mqttPort: 0,
          base: "mpota",
          block: 256,
          maxAttempts: 5,
          maxPushes: 8,
          logLevel: "silent",
        },
        io,
        new Promise<void>((resolve) => (stop = resolve)),
      );
      await eventually(() => io.stderrText.includes("Stop with Ctrl-C."), "banner");
      assert.match(
        io.stderrText,
        /^MQTT broker: mqtt:\/\/127\.0\.0\.1:\d+ \(listens on 127\.0\.0\.1 port \d+: this machine only\)\nNote: The MQTT broker listens on this machine only: devices on the network cannot reach it \(--mqtt-host 0\.0\.0\.0 opens it\)\.$/m,
      );
      stop();
      await serving;
    } finally {
      t.remove();
    }
  });

  it("on one LAN address: listens there only, and the server reaches its broker there", {
    skip: lan === undefined ? "this machine has no LAN address" : false,
  }, async () => {
    const t = makeTempDir("mpota-serve-tls-");
    const io = new MemoryIo();
    let stop: () => void = () => undefined;
    try {
      const serving = serveCommand(
        {
          data: join(t.dir, "data"),
          mqttHost: lan,
          mqttPort: 0,
          base: "mpota",
          block: 256,
          maxAttempts: 5,
          maxPushes: 8,
          logLevel: "silent",
        },
        io,
        new Promise<void>((resolve) => (stop = resolve)),
      );
      await eventually(() => io.stderrText.includes("Stop with Ctrl-C."), "banner");
      const plain = banner(io.stderrText, /^MQTT broker: (\S+) \(listens on (?:\S+) port (\d+)\)$/m);
      assert.deepEqual(plain.urls, [`mqtt://${lan}:${plain.port}`]);
      assert.doesNotMatch(io.stderrText, /^Note:/m);
      (await connectTestClient(plain.urls[0] ?? "", admin(join(t.dir, "data")))).end(true);
      await assert.rejects(connectTestClient(`mqtt://127.0.0.1:${plain.port}`), /ECONNREFUSED/);
      stop();
      await serving;
    } finally {
      t.remove();
    }
  });

  it("serves a certificate of the user's own, and says when an ESP8266 cannot use it", async () => {
    const t = makeTempDir("mpota-serve-tls-");
    const ca = makeCa(t.dir, "home-ca");
    const ec = issueCert(ca, t.dir, "broker-ec", "IP:127.0.0.1", "ec");
    const io = new MemoryIo();
    let stop: () => void = () => undefined;
    try {
      const serving = serveCommand(
        {
          data: join(t.dir, "data"),
          mqttHost: "127.0.0.1",
          mqttPort: 0,
          mqttTlsCert: ec.cert,
          mqttTlsKey: ec.key,
          mqttsHost: "127.0.0.1",
          mqttsPort: 0,
          base: "mpota",
          block: 256,
          maxAttempts: 5,
          maxPushes: 8,
          logLevel: "silent",
        },
        io,
        new Promise<void>((resolve) => (stop = resolve)),
      );
      await eventually(() => io.stderrText.includes("Stop with Ctrl-C."), "banner");
      const tls = banner(
        io.stderrText,
        /^MQTT broker with TLS: (mqtts:\/\/127\.0\.0\.1:\d+) \(listens on 127\.0\.0\.1 port (\d+): this machine only\)$/m,
      );
      assert.match(
        io.stderrText,
        new RegExp(
          `^  certificate ${quoted(ec.cert)}, SHA-256 fingerprint ${opensslFingerprint(ec.cert)}$`,
          "m",
        ),
      );
      assert.match(
        io.stderrText,
        new RegExp(
          `^Note: The certificate ${quoted(ec.cert)} has an EC key: an ESP8266 \\(MicroPython's axTLS\\) cannot connect to it, since axTLS knows only RSA key exchange\\. Use an RSA certificate if ESP8266 devices are to use TLS\\.$`,
          "m",
        ),
      );
      assert.match(io.stderrText, /^Note: The MQTT broker's TLS listener listens on this machine only/m);
      (
        await connectTestClient(tls.urls[0] ?? "", {
          ca: readFileSync(ca.cert),
          ...admin(join(t.dir, "data")),
        })
      ).end(true);
      stop();
      await serving;
    } finally {
      t.remove();
    }
  });
});

describe("mpota serve refuses TLS it cannot serve, and says why", () => {
  const t = makeTempDir("mpota-serve-tls-bad-");
  const ca = makeCa(t.dir, "home-ca");
  const good = issueCert(ca, t.dir, "broker", "IP:127.0.0.1");
  const other = issueCert(ca, t.dir, "other", "IP:127.0.0.1");
  const notPem = join(t.dir, "notes.txt");
  writeFileSync(notPem, "this is not a certificate\n");
  const encrypted = join(t.dir, "encrypted.key");
  writeFileSync(
    encrypted,
    execFileSync("openssl", ["pkey", "-in", good.key, "-aes256", "-passout", "pass:secret"], {
      encoding: "utf8",
    }),
  );
  after(() => t.remove());
  const base = [
    "--data",
    join(t.dir, "data"),
    "--mqtt-host",
    "127.0.0.1",
    "--mqtt-port",
    "0",
    "--http-port",
    "0",
  ];
  const tlsPorts = ["--mqtts-host", "127.0.0.1", "--mqtts-port", "0"];

  const cases: Array<[string, string[], number, string | RegExp]> = [
    [
      "a certificate file that does not exist",
      ["--mqtt-tls-cert", join(t.dir, "missing.pem"), "--mqtt-tls-key", good.key],
      3,
      `mpota: The TLS certificate ${join(t.dir, "missing.pem")} (--mqtt-tls-cert) cannot be read: it does not exist.\n`,
    ],
    [
      "a key file that is a directory",
      ["--mqtt-tls-cert", good.cert, "--mqtt-tls-key", t.dir],
      3,
      `mpota: The TLS key ${t.dir} (--mqtt-tls-key) cannot be read: it is a directory.\n`,
    ],
    [
      "a certificate that is not PEM",
      ["--mqtt-tls-cert", notPem, "--mqtt-tls-key", good.key],
      21,
      new RegExp(
        `^mpota: ${quoted(notPem)} is not a PEM certificate \\(a file that starts with -----BEGIN CERTIFICATE-----\\): .+\\. Give the broker's certificate with --mqtt-tls-cert, or let mpota make one with --mqtt-tls-self-signed\\.\\n$`,
      ),
    ],
    [
      "a key that belongs to another certificate",
      ["--mqtt-tls-cert", good.cert, "--mqtt-tls-key", other.key],
      21,
      `mpota: The key ${other.key} does not belong to the certificate ${good.cert} (their public keys differ). Give the key the certificate was made for.\n`,
    ],
    [
      "an encrypted key",
      ["--mqtt-tls-cert", good.cert, "--mqtt-tls-key", encrypted],
      21,
      `mpota: ${encrypted} is an encrypted private key: mpota cannot ask for its passphrase. Write an unencrypted copy readable only by mpota's user (openssl pkey -in ${encrypted} -out broker-key.pem; chmod 600 broker-key.pem) and give that with --mqtt-tls-key.\n`,
    ],
    [
      "a certificate without its key",
      ["--mqtt-tls-cert", good.cert],
      2,
      "mpota: --mqtt-tls-cert and --mqtt-tls-key go together: give both, or neither.\n",
    ],
    [
      "both a certificate and a self-signed one",
      ["--mqtt-tls-cert", good.cert, "--mqtt-tls-key", good.key, "--mqtt-tls-self-signed"],
      2,
      "mpota: Give either --mqtt-tls-cert and --mqtt-tls-key (your own certificate) or --mqtt-tls-self-signed (one mpota makes), not both.\n",
    ],
    [
      "a TLS port without TLS",
      ["--mqtts-port", "8884"],
      2,
      "mpota: --mqtts-host and --mqtts-port set up the embedded broker's TLS listener: turn it on with --mqtt-tls-cert FILE --mqtt-tls-key FILE, or --mqtt-tls-self-signed.\n",
    ],
  ];
  for (const [name, args, code, message] of cases) {
    it(name, async () => {
      const r = await serveFails([...base, ...tlsPorts, ...args], t.dir);
      assert.equal(r.code, code, r.stderr);
      if (typeof message === "string") assert.equal(r.stderr, message);
      else assert.match(r.stderr, message);
    });
  }

  it("TLS options with an external broker", async () => {
    const r = await serveFails(
      ["--data", join(t.dir, "data"), "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-tls-self-signed"],
      t.dir,
    );
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "mpota: --mqtt-tls-cert, --mqtt-tls-key, --mqtt-tls-self-signed, --mqtts-host and --mqtts-port set up TLS on the embedded broker; with --mqtt URL the server uses that broker instead (set TLS up there, and connect to it with mqtts:// and --mqtt-ca).\n",
    );
  });

  it("a TLS port that is in use", async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await serveFails(
        [
          ...base,
          "--mqtt-tls-cert",
          good.cert,
          "--mqtt-tls-key",
          good.key,
          "--mqtts-host",
          "127.0.0.1",
          "--mqtts-port",
          String(port),
        ],
        t.dir,
      );
      assert.equal(r.code, 21, r.stderr);
      assert.equal(
        r.stderr,
        `mpota: Port ${port} on 127.0.0.1 is in use (another MQTT broker with TLS, such as Mosquitto, or another \`mpota serve\`?). Give the embedded broker's TLS listener another port with --mqtts-port.\n`,
      );
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });

  it("a self-signed certificate without openssl", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(t.dir, "empty-path");
    try {
      const r = await serveFails(
        [...base, ...tlsPorts, "--data", join(t.dir, "no-openssl"), "--mqtt-tls-self-signed"],
        t.dir,
      );
      assert.equal(r.code, 21, r.stderr);
      assert.equal(
        r.stderr,
        "mpota: Making a self-signed certificate needs the `openssl` program, which is not installed (or not on the PATH). Install it (Debian, Raspberry Pi OS: sudo apt install openssl; macOS has it), or give a certificate and key of your own with --mqtt-tls-cert FILE --mqtt-tls-key FILE.\n",
      );
    } finally {
      process.env.PATH = path;
    }
  });
});
