import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { tempDir } from "../server/support/test-server.ts";

/**
 * The HTTP routes issue 14 added (audit list, credentials, provisioning, the
 * unsigned allowance) refuse anyone without the admin token, and refuse bad
 * input without changing anything.
 */
describe("attacks on the trust routes of the HTTP API", () => {
  const data = tempDir("mpota-http-trust-");
  let s: HttpTestServer;

  before(async () => {
    s = await startHttpServer(data.dir);
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  const routes: Array<[string, string, unknown?]> = [
    ["GET", "/api/v1/audit"],
    ["GET", "/api/v1/credentials"],
    ["POST", "/api/v1/devices", { id: "intruder" }],
    ["POST", "/api/v1/devices/intruder/allow-unsigned", { allow: true }],
  ];

  it("answers 401 without the token or with a wrong one, and provisions nothing", async () => {
    for (const [method, path, json] of routes) {
      for (const token of [false, "mpota_wrong-token-000000000000000"] as const) {
        const r = await call(s, method, path, { token, ...(json !== undefined ? { json } : {}) });
        assert.equal(
          r.status,
          401,
          `${method} ${path} with ${token === false ? "no token" : "a wrong token"}`,
        );
      }
    }
    assert.equal(await s.server.storage.credentials.get("intruder"), undefined);
  });

  it("refuses bad provisioning input with 400 and a reason, storing nothing", async () => {
    for (const [json, reason] of [
      [{ id: "bad id" }, /not a device id/],
      [{ id: "mpota-admin" }, /kept for the broker's user names/],
      [{ id: "ok-1", host: "evil host;rm" }, /"host" must be/],
      [{ id: "ok-1", port: 70000 }, /"port" must be a port number/],
    ] as const) {
      const r = await call(s, "POST", "/api/v1/devices", { json });
      assert.equal(r.status, 400, JSON.stringify(json));
      assert.match(String((r.body as { error?: string }).error), reason);
    }
    assert.deepEqual(await s.server.storage.credentials.list(), []);
    const audit = await call(s, "GET", "/api/v1/audit?limit=5000");
    assert.equal(audit.status, 400);
  });
});
