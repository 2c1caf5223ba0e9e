import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempDir } from "../support/cli.ts";

const root = new URL("../../", import.meta.url).pathname;
// The npm beside this node (a Node from the npm registry's node package has none: then PATH's).
const npm = existsSync(join(dirname(process.execPath), "npm"))
  ? join(dirname(process.execPath), "npm")
  : "npm";
const nodeSqlite = isBuiltin("node:sqlite");
const ci = process.env.CI === "true" || process.env.CI === "1";
// Without node:sqlite (Node 20) the real install compiles better-sqlite3: 2 to 5 minutes on
// 2 cores. CI does it; elsewhere MPOTA_TEST_BUILD_DRIVER=1 asks for it.
const buildDriver = !nodeSqlite && (ci || process.env.MPOTA_TEST_BUILD_DRIVER === "1");

/** Process groups still running: killed if this file ends early, so no npm, make or mpota is left behind. */
const groups = new Set<number>();
process.on("exit", () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {}
  }
});

/** The environment of a fresh shell: none of the npm_* variables of an `npm test` around this. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...env, ...extra };
}

interface Finished {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a command in a process group of its own, all of it killed at `timeoutMs`. */
function runBounded(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<Finished>((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const pid = child.pid as number;
    groups.add(pid);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs / 1000} s)`;
      process.kill(-pid, "SIGKILL");
    }, timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      groups.delete(pid);
      resolve({ status, stdout, stderr, seconds: (Date.now() - started) / 1000 });
    });
  });
}

/** A started `mpota` process whose output is collected. */
interface Running {
  output: () => string;
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  stop: () => Promise<void>;
}

function start(args: string[], cwd: string, env: NodeJS.ProcessEnv): Running {
  const child: ChildProcess = spawn("mpota", args, {
    cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid as number;
  groups.add(pid);
  let text = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    text += s;
  });
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    text += s;
  });
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return {
    output: () => text,
    waitFor: async (pattern, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(pattern);
        if (m) return m;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`mpota ${args.join(" ")} did not print ${pattern}:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await closed;
      groups.delete(pid);
    },
  };
}

/** npm's own words when it could not reach the registry (not a failing build's). */
const UNREACHABLE =
  /^npm error code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)/m;

/** One retry, soon: npm's default backoff waits minutes before it says the registry is unreachable. */
const RETRY = ["--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=5000"];

/** `npm install -g <tarball>` into `prefix`, as a user types it, with npm's cache (filled by `npm ci`) preferred. */
function installGlobal(
  tarball: string,
  prefix: string,
  cwd: string,
  flags: string[],
  env: NodeJS.ProcessEnv = {},
) {
  const args = ["install", "-g", tarball, "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund"];
  // JOBS=max: node-gyp compiles better-sqlite3 on every core.
  return runBounded(npm, [...args, ...RETRY, ...flags], cwd, cleanEnv({ JOBS: "max", ...env }), 600_000);
}

/**
 * The package as `npm pack` makes it, installed by a real `npm install -g`
 * into a prefix of its own (never the user's), run from a folder that is
 * not the clone. npm resolves the dependencies as for any user (the
 * package has no lockfile): `--prefer-offline` takes what npm's cache
 * holds and asks the registry for the rest; with no registry the tests
 * skip, saying so. On Node 22.13+ and 24 it installs with
 * `--ignore-scripts`, as the README says (nothing needs compiling there);
 * on Node 20 a plain install compiles the SQLite driver, which only CI
 * waits for: elsewhere Node 20 installs with `--ignore-scripts` too and
 * checks that `mpota serve` says how to build it.
 */
describe("npm pack: the package installs globally and works from any folder", () => {
  const tmp = makeTempDir("mpota-pack-");
  const prefix = join(tmp.dir, "prefix");
  const elsewhere = join(tmp.dir, "elsewhere");
  let env: NodeJS.ProcessEnv;
  let tarball = "";
  let skip: string | false = false;

  before(async () => {
    assert.ok(existsSync(join(root, "dist/cli/main.js")), "build first: npm run build (npm test does)");
    // The build is this checkout's; prepare would rebuild it under other running tests.
    const packed = execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", tmp.dir, "--json"], {
      cwd: root,
      encoding: "utf8",
      env: cleanEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const info = JSON.parse(packed) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = join(tmp.dir, info[0]?.filename as string);
    const files = (info[0]?.files ?? []).map((f) => f.path);
    for (const needed of [
      "bin/mpota.js",
      "dist/cli/main.js",
      "src/dashboard/index.html",
      "src/dashboard/app.js",
      "device/mpota_agent.py",
      "scripts/postinstall.mjs",
      "package.json",
    ]) {
      assert.ok(files.includes(needed), `the package holds ${needed}`);
    }
    assert.equal(files.filter((f) => f.startsWith("test/") || f.endsWith(".test.ts")).length, 0);

    mkdirSync(elsewhere, { recursive: true });
    const install = await installGlobal(tarball, prefix, tmp.dir, buildDriver ? [] : ["--ignore-scripts"]);
    if (UNREACHABLE.test(install.stderr)) {
      skip = `the npm registry is unreachable: ${install.stderr.match(UNREACHABLE)?.[0]}`;
      return;
    }
    assert.equal(install.status, 0, `npm install -g failed:\n${install.stderr}`);
    process.stderr.write(
      `# npm install -g ${buildDriver ? "(compiling better-sqlite3)" : "--ignore-scripts"}: ${install.seconds.toFixed(1)} s\n`,
    );
    env = {
      PATH: [join(prefix, "bin"), dirname(process.execPath), "/usr/bin", "/bin"].join(":"),
      HOME: elsewhere,
    };
  });
  after(() => tmp.remove());

  test("mpota is on the PATH, and `mpota push` lands on the emulator", async (t) => {
    if (skip) return t.skip(skip);
    const which = spawnSync("sh", ["-c", "command -v mpota"], { env, encoding: "utf8" });
    assert.equal(which.stdout.trim(), join(prefix, "bin/mpota"));
    const run = (...args: string[]) => spawnSync("mpota", args, { cwd: elsewhere, env, encoding: "utf8" });
    assert.equal(run("keys", "new").status, 0);
    const written = run("simulate", "--write-firmware", "fw.bin", "--firmware-size", "65536");
    assert.equal(written.status, 0, written.stderr);
    const emulator = start(
      ["emulate", "--bind", "127.0.0.1", "--port", "0", "--no-console", "--baud", "921600"],
      elsewhere,
      env,
    );
    try {
      const [, port] = await emulator.waitFor(/OTA mode, listening on 127\.0\.0\.1:(\d+)/);
      const pushed = spawnSync("mpota", ["push", "fw.bin", "--to", "127.0.0.1", "--port", port as string], {
        cwd: elsewhere,
        env,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(pushed.status, 0, pushed.stderr);
      assert.match(pushed.stdout, new RegExp(`Update sent to 127\\.0\\.0\\.1:${port}`));
      await emulator.waitFor(/Running app [0-9a-f]{32}/);
    } finally {
      await emulator.stop();
    }
  });

  test("`mpota serve` runs with its data in this folder, and serves the dashboard and the API", async (t) => {
    if (skip) return t.skip(skip);
    const args = [
      "serve",
      "--mqtt-host",
      "127.0.0.1",
      "--mqtt-port",
      "0",
      "--http-port",
      "0",
      "--log-level",
      "info",
    ];
    if (!nodeSqlite && !buildDriver) {
      // Installed with --ignore-scripts on Node 20: the server must say how to build its driver.
      t.diagnostic("Node 20 without the compiled driver (CI or MPOTA_TEST_BUILD_DRIVER=1 compiles it)");
      const refused = spawnSync("mpota", args, { cwd: elsewhere, env, encoding: "utf8", timeout: 60_000 });
      assert.equal(refused.status, 24, refused.stderr);
      const driver = join(prefix, "lib/node_modules/mpota/node_modules/better-sqlite3");
      assert.match(refused.stderr, /SQLite is not available on Node v20/);
      assert.ok(refused.stderr.includes(`npm run install --prefix ${driver}`), refused.stderr);
      return;
    }
    const server = start(args, elsewhere, env);
    try {
      const [url] = await server.waitFor(/http:\/\/127\.0\.0\.1:\d+\//, 60_000);
      const [, token] = await server.waitFor(/^\s+(mpota_\S+)$/m);
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type") ?? "", /text\/html/);
      assert.match(await page.text(), /<title>mpota<\/title>/);
      for (const [path, type] of [
        ["app.js", /javascript/],
        ["style.css", /text\/css/],
        ["vendor/preact.mjs", /javascript/],
        ["vendor/htm.mjs", /javascript/],
      ] as const) {
        const response = await fetch(`${url}${path}`);
        assert.equal(response.status, 200, `${url}${path}`);
        assert.match(response.headers.get("content-type") ?? "", type);
        await response.arrayBuffer();
      }
      // The API answers from the SQLite database, with the token the server printed.
      assert.equal((await fetch(`${url}api/v1/devices`)).status, 401);
      const devices = await fetch(`${url}api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(devices.status, 200, await devices.clone().text());
      assert.equal(devices.headers.get("x-total-count"), "0");
      assert.deepEqual(await devices.json(), []);
      assert.ok(readdirSync(join(elsewhere, ".mpota")).includes("mpota.db"), "the data is in ./.mpota");
    } finally {
      await server.stop();
    }
  });

  test("the postinstall: nothing to do with node:sqlite; without it, a driver that cannot be compiled fails the install saying what to do", async (t) => {
    if (skip) return t.skip(skip);
    if (nodeSqlite) {
      // What a plain `npm install -g` runs after the dependencies' scripts.
      const script = join(prefix, "lib/node_modules/mpota/scripts/postinstall.mjs");
      const ran = spawnSync(process.execPath, [script], { cwd: elsewhere, env, encoding: "utf8" });
      assert.equal(ran.status, 0, ran.stderr);
      assert.equal(ran.stderr, "");
      return;
    }
    // A compiler that fails at once stands in for a machine without one.
    const failedPrefix = join(tmp.dir, "failed");
    const install = await installGlobal(tarball, failedPrefix, tmp.dir, [], { CC: "false", CXX: "false" });
    assert.notEqual(install.status, 0, "the install fails");
    assert.match(install.stderr, /mpota: `mpota serve` needs SQLite\. Node v20\.\d+\.\d+ has no node:sqlite/);
    assert.match(install.stderr, /building it failed .*it needs python3, make and a C\+\+ compiler/);
    assert.match(install.stderr, /Node 22\.13 or later \(24 recommended\)/);
    assert.match(install.stderr, /apt-get install python3 make g\+\+/);
    assert.match(install.stderr, /add --ignore-scripts/);
    assert.equal(existsSync(join(failedPrefix, "bin/mpota")), false, "npm rolled the install back");
  });
});
