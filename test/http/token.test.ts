import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { MemoryIo } from "../../src/cli/io.ts";
import { tokenRotateCommand, tokenShowPathCommand } from "../../src/cli/token.ts";
import { adminTokenPath } from "../../src/server/http/admin-token.ts";
import { tempDir } from "../server/support/test-server.ts";
import { makeTempDir, runCli } from "../support/cli.ts";
import { call, startHttpServer } from "./support.ts";

const tmp = makeTempDir("mpota-token-path-");
after(() => tmp.remove());

describe("mpota token", () => {
  test("show-path in a directory where no server ran: the path, and on stderr that there is no token yet and --data", async () => {
    const r = await runCli(["token", "show-path", "--data", "no-server-here"], { cwd: tmp.dir });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${join(tmp.dir, "no-server-here", "admin-token")}\n`);
    assert.match(
      r.stderr,
      /There is no admin token at .*no-server-here\/admin-token yet: `mpota serve` makes it/,
    );
    assert.match(r.stderr, /Pass the --data DIR your server uses \(here: no-server-here\)/);
  });

  test("show-path prints where the token is; rotate replaces it, and the running server takes the new one", async () => {
    const data = tempDir("mpota-token-");
    const s = await startHttpServer(data.dir);
    try {
      const io = new MemoryIo();
      tokenShowPathCommand({ data: data.dir }, io);
      assert.equal(io.stdout, `${adminTokenPath(data.dir)}\n`);
      assert.equal(io.stderrText, "");
      const login = await call(s, "POST", "/api/v1/login", { json: { token: s.token }, token: false });
      const session = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;

      const rotate = new MemoryIo();
      tokenRotateCommand({ data: data.dir }, rotate);
      const fresh = rotate.stdout.trim();
      assert.notEqual(fresh, s.token);
      assert.equal(readFileSync(adminTokenPath(data.dir), "utf8").trim(), fresh);
      assert.equal(statSync(adminTokenPath(data.dir)).mode & 0o777, 0o600);
      assert.match(rotate.stderrText, /The old token and every dashboard session stop working now/);

      assert.equal((await call(s, "GET", "/api/v1/devices")).status, 401);
      assert.equal((await call(s, "GET", "/api/v1/devices", { token: fresh })).status, 200);
      assert.equal(
        (await call(s, "GET", "/api/v1/devices", { token: false, headers: { cookie: session } })).status,
        401,
      );
    } finally {
      await s.stop();
      data.remove();
    }
  });
});
