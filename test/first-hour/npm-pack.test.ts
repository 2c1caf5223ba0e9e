import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempDir } from "../support/cli.ts";

const root = new URL("../../", import.meta.url).pathname;
// The npm beside this node (a Node from the npm registry's node package has none: then PATH's).
const npm = existsSync(join(dirname(process.execPath), "npm"))
  ? join(dirname(process.execPath), "npm")
  : "npm";

/** A started `mpota` process whose output is collected. */
interface Running {
  child: ChildProcess;
  output: () => string;
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  stop: () => Promise<void>;
}

function start(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    text += s;
  });
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    text += s;
  });
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return {
    child,
    output: () => text,
    waitFor: async (pattern, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(pattern);
        if (m) return m;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`${command} ${args.join(" ")} did not print ${pattern}:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await closed;
    },
  };
}

/**
 * The package as `npm pack` makes it, installed globally into a prefix of
 * its own, run from a folder that is not the clone. Slow (tens of seconds):
 * it packs, installs and starts the real server, emulator and push.
 *
 * The install is `npm install -g ./mpota-<version>.tgz --offline`, which
 * must not need the network. When npm's cache cannot serve it offline (it
 * holds the dependencies' tarballs from `npm ci`, but a global install also
 * asks for their registry metadata, which `npm ci` never fetched), the test
 * lays the package out exactly as npm does (package in
 * <prefix>/lib/node_modules/mpota, the dependencies of the lockfile beside
 * it, <prefix>/bin/mpota linked to its bin script) and says so.
 */
describe("npm pack: the package installs globally and works from any folder", () => {
  const tmp = makeTempDir("mpota-pack-");
  const prefix = join(tmp.dir, "prefix");
  const elsewhere = join(tmp.dir, "elsewhere");
  let env: NodeJS.ProcessEnv;
  let tarball = "";
  let installedBy = "";

  before(() => {
    assert.ok(existsSync(join(root, "dist/cli/main.js")), "build first: npm run build (npm test does)");
    // The build is this checkout's; prepare would rebuild it under other running tests.
    const packed = execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", tmp.dir, "--json"], {
      cwd: root,
      encoding: "utf8",
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
      "package.json",
    ]) {
      assert.ok(files.includes(needed), `the package holds ${needed}`);
    }
    assert.equal(files.filter((f) => f.startsWith("test/") || f.endsWith(".test.ts")).length, 0);

    mkdirSync(prefix, { recursive: true });
    mkdirSync(elsewhere, { recursive: true });
    const install = spawnSync(npm, ["install", "-g", tarball, "--offline", "--no-audit", "--no-fund"], {
      cwd: tmp.dir,
      env: { ...process.env, npm_config_prefix: prefix },
      encoding: "utf8",
      timeout: 300_000,
    });
    if (install.status === 0) installedBy = "npm install -g --offline";
    else {
      assert.match(install.stderr, /ENOTCACHED/, `npm install -g failed otherwise:\n${install.stderr}`);
      const lib = join(prefix, "lib/node_modules/mpota");
      mkdirSync(lib, { recursive: true });
      execFileSync("tar", ["xzf", tarball, "-C", lib, "--strip-components=1"]);
      symlinkSync(join(root, "node_modules"), join(lib, "node_modules"));
      mkdirSync(join(prefix, "bin"), { recursive: true });
      symlinkSync("../lib/node_modules/mpota/bin/mpota.js", join(prefix, "bin/mpota"));
      installedBy = "the layout of npm install -g (npm's cache cannot serve it offline here: ENOTCACHED)";
    }
    env = {
      PATH: [join(prefix, "bin"), dirname(process.execPath), "/usr/bin", "/bin"].join(":"),
      HOME: elsewhere,
    };
  });
  after(() => tmp.remove());

  test("mpota is on the PATH, and `mpota push` lands on the emulator", async (t) => {
    t.diagnostic(`installed by ${installedBy}`);
    const which = spawnSync("sh", ["-c", "command -v mpota"], { env, encoding: "utf8" });
    assert.equal(which.stdout.trim(), join(prefix, "bin/mpota"));
    const run = (...args: string[]) => spawnSync("mpota", args, { cwd: elsewhere, env, encoding: "utf8" });
    assert.equal(run("keys", "new").status, 0);
    const written = run("simulate", "--write-firmware", "fw.bin", "--firmware-size", "65536");
    assert.equal(written.status, 0, written.stderr);
    const emulator = start(
      "mpota",
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

  test("`mpota serve` runs with its data in this folder, and serves the dashboard and its libraries", async () => {
    const server = start(
      "mpota",
      ["serve", "--mqtt-host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--log-level", "info"],
      elsewhere,
      env,
    );
    try {
      const [url] = await server.waitFor(/http:\/\/127\.0\.0\.1:\d+\//, 30_000);
      for (const [path, type] of [
        ["", /text\/html/],
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
      assert.ok(readdirSync(join(elsewhere, ".mpota")).includes("admin-token"), "the data is in ./.mpota");
    } finally {
      await server.stop();
    }
  });
});
