import assert from "node:assert/strict";
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempDir, runCli } from "../support/cli.ts";
import { fixturePath } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";

describe("sign and push check the firmware first", () => {
  const tmp = makeTempDir("mpota-preflight-");
  before(() => {
    copyFileSync(fixturePath("reference/priv-pkcs1.key"), join(tmp.dir, "priv.key"));
    writeFileSync(join(tmp.dir, "ota.bin"), buildMicroPythonImage({ size: 300 * 1024, seed: 5 }));
    writeFileSync(
      join(tmp.dir, "normal.bin"),
      buildMicroPythonImage({ size: 300 * 1024, seed: 5, ota: false }),
    );
    const corrupt = buildMicroPythonImage({ size: 300 * 1024, seed: 6 });
    corrupt[0x9000 + 100] = (corrupt[0x9000 + 100] as number) ^ 0xff;
    writeFileSync(join(tmp.dir, "corrupt.bin"), corrupt);
    writeFileSync(join(tmp.dir, "big.bin"), buildMicroPythonImage({ size: 700 * 1024, seed: 7 }));
  });
  after(() => tmp.remove());

  test("an OTA build that fits is signed", async () => {
    const r = await runCli(["sign", "ota.bin"], { cwd: tmp.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(tmp.dir, "ota.bin.ota")));
  });

  test("a normal (non-OTA) build is refused with the cause and the fix; --force signs it", async () => {
    const r = await runCli(["sign", "normal.bin"], { cwd: tmp.dir });
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /OTA/);
    assert.match(r.stderr, /Pass --force to go ahead anyway/);
    assert.equal(existsSync(join(tmp.dir, "normal.bin.ota")), false);
    const forced = await runCli(["sign", "normal.bin", "--force"], { cwd: tmp.dir });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /forced past a refusal/);
  });

  test("a corrupt MD5 trailer is refused, and --force cannot override it", async () => {
    for (const args of [
      ["sign", "corrupt.bin"],
      ["sign", "corrupt.bin", "--force"],
    ]) {
      const r = await runCli(args, { cwd: tmp.dir });
      assert.equal(r.code, 10, r.stderr);
      assert.match(r.stderr, /MD5/);
      assert.match(r.stderr, /--force cannot override/);
    }
    assert.equal(existsSync(join(tmp.dir, "corrupt.bin.ota")), false);
  });

  test("push refuses before touching the network: a 700 KiB image does not fit a 512K device", async () => {
    const r = await runCli(["push", "big.bin", "--to", "127.0.0.1", "--flash-size", "512K", "--wait", "1"], {
      cwd: tmp.dir,
    });
    assert.equal(r.code, 10, r.stderr);
    assert.doesNotMatch(r.stderr, /No answer/);
  });

  test("push checks the firmware inside a canned .ota too", async () => {
    const signed = await runCli(["sign", "normal.bin", "--force", "-o", "normal.ota"], { cwd: tmp.dir });
    assert.equal(signed.code, 0, signed.stderr);
    const r = await runCli(["push", "normal.ota", "--to", "127.0.0.1", "--wait", "1"], { cwd: tmp.dir });
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /OTA/);
  });
});
