import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { defaultAppKeyPath, loadAppKey } from "../../src/apps/app-key.ts";
import { verifyAppManifest } from "../../src/apps/app-signature.ts";
import { MAX_APP_ZIP_BYTES } from "../../src/apps/app-zip.ts";
import { tempDir } from "../server/support/test-server.ts";
import { buildZip, type ZipEntry } from "../support/zip-writer.ts";
import { call, type HttpTestServer, startHttpServer } from "./support.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const MAIN = Buffer.from('import sensors\nprint("thermostat")\n');
const SENSORS = Buffer.from(`# sensors\n${"READINGS = []\n".repeat(200)}`);

/** The zip of a folder "thermostat/" as an archiver makes it: the folder's entry, its files, the clutter. */
function folderZip(extra: ZipEntry[] = []): Buffer {
  return buildZip([
    { name: "thermostat/" },
    { name: "thermostat/main.py", data: MAIN },
    { name: "thermostat/lib/" },
    { name: "thermostat/lib/sensors.py", data: SENSORS },
    { name: "thermostat/.DS_Store", data: Buffer.from("junk") },
    { name: "thermostat/lib/__pycache__/sensors.cpython-312.pyc", data: Buffer.from("pyc") },
    { name: "__MACOSX/thermostat/._main.py", data: Buffer.from("fork") },
    ...extra,
  ]);
}

describe("POST /api/v1/apps/zip: an app folder's zip becomes a signed release", () => {
  const data = tempDir("mpota-app-zip-");
  let s: HttpTestServer;
  const upload = (zip: Uint8Array, query: string, options: { token?: string | false; type?: string } = {}) =>
    call(s, "POST", `/api/v1/apps/zip?${query}`, {
      body: zip,
      headers: { "content-type": options.type ?? "application/zip" },
      ...(options.token !== undefined ? { token: options.token } : {}),
    });
  const storedFiles = () => {
    const dir = join(data.dir, "apps", "files");
    return existsSync(dir) ? readdirSync(dir).length : 0;
  };
  const listed = async () =>
    ((await call(s, "GET", "/api/v1/apps")).body as Array<{ name: string; version: string }>).map(
      (a) => `${a.name}@${a.version}`,
    );

  before(async () => {
    s = await startHttpServer(data.dir);
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  test("a zipped folder: its files (the top folder and clutter left out), signed with the server's app key", async () => {
    const reply = await upload(folderZip(), "name=thermostat&version=1.4.0&boards=esp32,esp8266&notes=First");
    assert.equal(reply.status, 201, JSON.stringify(reply.body));
    const app = reply.body.app;
    assert.deepEqual(
      [app.name, app.version, app.files, app.bytes, app.boards, app.notes],
      ["thermostat", "1.4.0", 2, MAIN.length + SENSORS.length, ["esp32", "esp8266"], "First"],
    );
    assert.deepEqual(reply.body.skipped.sort(), [
      ".DS_Store",
      "__MACOSX/",
      "lib/__pycache__/sensors.cpython-312.pyc",
    ]);
    const key = loadAppKey(defaultAppKeyPath(data.dir), { create: false });
    assert.equal(reply.body.key.kid, key.kid);
    assert.equal(reply.body.key.created, true);
    assert.deepEqual(
      reply.body.verdicts.map((v: { check: string; level: string }) => [v.check, v.level]),
      [
        ["app-manifest", "ok"],
        ["app-signature", "ok"],
      ],
    );
    // The stored manifest verifies with the server's key and names the files by path, size and digest.
    const artifact = await s.server.library.readRelease(app.id);
    const manifest = verifyAppManifest(Buffer.from(artifact.bytes), [key.privateKey]);
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.size, f.sha256]),
      [
        ["lib/sensors.py", SENSORS.length, sha(SENSORS)],
        ["main.py", MAIN.length, sha(MAIN)],
      ],
    );
    assert.deepEqual(readFileSync(join(data.dir, "apps", "files", sha(MAIN))), MAIN);
    assert.deepEqual(await listed(), ["thermostat@1.4.0"]);
    const audit = (await call(s, "GET", "/api/v1/audit")).body as Array<{ action: string; outcome: string }>;
    assert.deepEqual(
      audit.filter((e) => e.action === "app/upload").map((e) => e.outcome),
      ["ok"],
    );
  });

  test("a zip made by the zip tool (zip -r) is read the same way", async (t) => {
    if (!existsSync("/usr/bin/zip")) {
      t.skip("no /usr/bin/zip on this machine");
      return;
    }
    const dir = join(data.dir, "src", "thermostat");
    mkdirSync(join(dir, "lib"), { recursive: true });
    writeFileSync(join(dir, "main.py"), MAIN);
    writeFileSync(join(dir, "lib", "sensors.py"), SENSORS);
    writeFileSync(join(dir, "lib", "extra.py"), "X = 2\n");
    const file = join(data.dir, "src", "app.zip");
    execFileSync("/usr/bin/zip", ["-q", "-r", file, "thermostat"], { cwd: join(data.dir, "src") });
    const reply = await upload(readFileSync(file), "name=thermostat&version=1.5.0");
    assert.equal(reply.status, 201, JSON.stringify(reply.body));
    assert.equal(reply.body.app.files, 3);
    assert.equal(reply.body.key.created, false);
  });

  test("a zip with ZIP64 records (zip -fz, as zip writes from a pipe) is read the same way", async (t) => {
    if (!existsSync("/usr/bin/zip")) {
      t.skip("no /usr/bin/zip on this machine");
      return;
    }
    const dir = join(data.dir, "src64", "thermostat");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "main.py"), MAIN);
    const file = join(data.dir, "src64", "app.zip");
    execFileSync("/usr/bin/zip", ["-q", "-fz", "-r", file, "thermostat"], { cwd: join(data.dir, "src64") });
    // The end of a ZIP64 archive: its end record and locator before the classic end record.
    assert.ok(readFileSync(file).includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])));
    const reply = await upload(readFileSync(file), "name=thermostat&version=1.6.0");
    assert.equal(reply.status, 201, JSON.stringify(reply.body));
    assert.equal(reply.body.app.files, 1);
    assert.equal(reply.body.app.bytes, MAIN.length);
  });

  test("without credentials: 401, nothing read or stored", async () => {
    const before = storedFiles();
    const reply = await upload(
      folderZip([{ name: "thermostat/new.py", data: Buffer.from("N = 1\n") }]),
      "name=thermostat&version=9.0.0",
      { token: false },
    );
    assert.equal(reply.status, 401);
    assert.equal(storedFiles(), before);
    assert.equal((await listed()).includes("thermostat@9.0.0"), false);
  });

  const refusals: Array<[string, () => Buffer, RegExp]> = [
    [
      "zip-slip: a name that climbs out of the app",
      () =>
        buildZip([
          { name: "main.py", data: MAIN },
          { name: "../../evil.py", data: Buffer.from("x") },
        ]),
      /The app file \.\.\/\.\.\/evil\.py in the zip is refused: it climbs out of the app \(\.\.\)\. Nothing was stored\./,
    ],
    [
      "zip-slip: an absolute name",
      () => buildZip([{ name: "/etc/cron.d/evil.py", data: Buffer.from("x") }]),
      /\/etc\/cron\.d\/evil\.py in the zip is refused: it is absolute/,
    ],
    [
      "zip-slip: a backslash name (Windows' separator)",
      () => buildZip([{ name: "..\\evil.py", data: Buffer.from("x") }]),
      /in the zip is refused: it holds a backslash/,
    ],
    [
      "the loader's boot.py (reserved, as in mpota app add)",
      () =>
        buildZip([
          { name: "app/main.py", data: MAIN },
          { name: "app/boot.py", data: Buffer.from("x") },
        ]),
      /The app file boot\.py in the zip is refused: boot\.py belongs to the device/,
    ],
    [
      "the per-device settings (mpota_config.py, any case)",
      () => buildZip([{ name: "MPOTA_CONFIG.py", data: Buffer.from("x") }]),
      /MPOTA_CONFIG\.py belongs to the device/,
    ],
    [
      "a zip bomb: an entry that inflates past the size it declares",
      () => buildZip([{ name: "main.py", data: Buffer.alloc(64 * 1024 * 1024), declaredSize: 1000 }]),
      /The zip is refused: main\.py inflates to more than the 1000 bytes it declares\. Nothing was stored\./,
    ],
    [
      "a zip bomb: files that declare more than a release holds together",
      () =>
        buildZip(
          [0, 1, 2, 3, 4].map((i) => ({
            name: `f${i}.py`,
            packed: Buffer.alloc(8),
            method: 8,
            declaredSize: 1_000_000,
          })),
        ),
      /its files inflate to more than 4194304 bytes \(4 MiB\), the most a release holds/,
    ],
    [
      "one file larger than an app file may be",
      () =>
        buildZip([{ name: "big.bin", packed: Buffer.alloc(8), method: 8, declaredSize: 2 * 1024 * 1024 }]),
      /big\.bin inflates to 2097152 bytes; an app file holds at most 1048576/,
    ],
    [
      "a ZIP64 size over an app file's bound (the bounds apply to what ZIP64 declares)",
      () =>
        buildZip([
          { name: "big.bin", packed: Buffer.alloc(8), method: 8, declaredSize: 2 * 1024 * 1024, zip64: true },
        ]),
      /big\.bin inflates to 2097152 bytes; an app file holds at most 1048576/,
    ],
    [
      "an entry whose bytes do not match its CRC",
      () => buildZip([{ name: "main.py", data: MAIN, crc: 0x12345678 }]),
      /The zip is refused: main\.py does not match its CRC; the zip is damaged, zip the folder again\./,
    ],
    [
      "a stored entry whose sizes disagree (caught by yauzl, said with what to do)",
      () => buildZip([{ name: "main.py", data: MAIN, method: 0, declaredSize: 10 }]),
      /The zip is refused: it cannot be read as a zip \(.*size mismatch.*\); zip the app's folder again and upload that\./,
    ],
    [
      "a zip that spans several disks",
      () => buildZip([{ name: "main.py", data: MAIN }], { disk: 1 }),
      /The zip is refused: it spans several disks; zip the app's folder into one file\./,
    ],
    [
      "too many entries",
      () => buildZip(Array.from({ length: 600 }, (_, i) => ({ name: `d${i}/` }))),
      /The zip is refused: it has 600 entries; an app's zip has at most 512/,
    ],
    [
      "more files than a release holds",
      () => buildZip(Array.from({ length: 257 }, (_, i) => ({ name: `m${i}.py`, data: Buffer.from("x") }))),
      /it holds more than 256 files, the most a release holds/,
    ],
    [
      "a symbolic link",
      () => buildZip([{ name: "main.py", data: Buffer.from("/etc/passwd"), mode: 0o120777 }]),
      /main\.py is a symbolic link/,
    ],
    [
      "a local header naming another file than the central directory",
      () => buildZip([{ name: "main.py", localName: "boot.py", data: MAIN }]),
      /the entry main\.py has another name in its local header/,
    ],
    [
      "an encrypted entry",
      () => buildZip([{ name: "main.py", data: MAIN, flags: 1 }]),
      /main\.py is encrypted/,
    ],
    [
      "two paths FAT sees as one",
      () =>
        buildZip([
          { name: "main.py", data: MAIN },
          { name: "Main.py", data: Buffer.from("y") },
        ]),
      /differ only in upper and lower case/,
    ],
    [
      "not a zip",
      () => Buffer.from("print('a .py file, not a zip')\n"),
      /it is not a zip file \(no end of central directory\)/,
    ],
    [
      "a .py file MicroPython cannot compile",
      () =>
        buildZip([
          { name: "main.py", data: MAIN },
          { name: "lib/sensor.py", data: Buffer.from("def read(:\n    return 1\n") },
        ]),
      /A \.py file does not compile under MicroPython 1\.27: lib\/sensor\.py: line 1: SyntaxError: invalid syntax\. A board would fail to import it: fix the file and add the release again\./,
    ],
    [
      "only clutter",
      () => buildZip([{ name: ".git/config", data: Buffer.from("x") }]),
      /it holds no app files \(only \.git\/config, which are left out\)/,
    ],
  ];
  for (const [what, zip, message] of refusals) {
    test(`refused with 400 before anything is stored: ${what}`, async () => {
      const before = storedFiles();
      const reply = await upload(zip(), "name=evil&version=1.0");
      assert.equal(reply.status, 400, JSON.stringify(reply.body).slice(0, 300));
      assert.match(reply.body.error, message);
      assert.equal(storedFiles(), before);
      assert.deepEqual(
        (await listed()).filter((r) => r.startsWith("evil@")),
        [],
      );
    });
  }

  test("a body over the zip bound is refused with 413 while it arrives", async () => {
    const reply = await upload(Buffer.alloc(MAX_APP_ZIP_BYTES + 1), "name=evil&version=2.0");
    assert.equal(reply.status, 413);
    assert.match(reply.body.error, /larger than/i);
  });

  test("missing name or version, a board no release takes, a form post: refused with what to send", async () => {
    let reply = await upload(folderZip(), "version=1.0");
    assert.equal(reply.status, 400);
    assert.match(reply.body.error, /needs "name" and "version"/);
    reply = await upload(folderZip(), "name=thermostat&version=3.0&boards=esp32,z80");
    assert.equal(reply.status, 400);
    assert.match(reply.body.error, /z80/);
    reply = await upload(folderZip(), "name=thermostat&version=3.0", {
      type: "multipart/form-data; boundary=x",
    });
    assert.equal(reply.status, 415);
    reply = await upload(folderZip(), "name=Not%20A%20Name&version=3.0");
    assert.equal(reply.status, 400);
    assert.deepEqual(
      (await listed()).filter((r) => r.endsWith("@3.0")),
      [],
    );
  });
});
