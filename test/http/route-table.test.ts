import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { API_ROUTES } from "../../src/server/http/api-router.ts";
import { type Route, RouteTable } from "../../src/server/http/route-table.ts";

const handle = async () => undefined;

describe("route table", () => {
  const table = new RouteTable<unknown>([
    { method: "GET", path: "/jobs", handle },
    { method: "GET", path: "/jobs/:id", handle },
    { method: "POST", path: "/jobs/:id/cancel", handle },
    { method: "DELETE", path: "/firmware/:id", handle },
  ]);

  test("a path with parameters matches its route and hands the parameters over", () => {
    const found = table.match("POST", ["jobs", "j 1/2", "cancel"]);
    assert.ok(found && "route" in found);
    assert.equal(found.route.path, "/jobs/:id/cancel");
    assert.deepEqual(found.params, { id: "j 1/2" });
  });

  test("a known path with another method lists the allowed methods; an unknown path is no match", () => {
    assert.deepEqual(table.match("PUT", ["jobs", "j-1"]), { allowed: ["GET"] });
    assert.deepEqual(table.match("GET", ["firmware", "abc"]), { allowed: ["DELETE"] });
    assert.equal(table.match("GET", ["jobs", "j-1", "steps"]), undefined);
    assert.equal(table.match("GET", ["jobs", ""]), undefined, "an empty parameter is no match");
    assert.equal(table.match("GET", ["nothing"]), undefined);
  });

  test("a route listed twice is refused when the table is built", () => {
    const twice: Route<unknown>[] = [
      { method: "GET", path: "/info", handle },
      { method: "GET", path: "/info", handle },
    ];
    assert.throws(() => new RouteTable(twice), /route GET \/info is in the table twice/);
  });

  test("the API's table has every documented endpoint", () => {
    const expected: Array<[string, string[]]> = [
      ["GET", ["session"]],
      ["POST", ["login"]],
      ["POST", ["logout"]],
      ["GET", ["info"]],
      ["GET", ["devices"]],
      ["POST", ["devices"]],
      ["GET", ["devices", "kitchen"]],
      ["POST", ["devices", "kitchen", "allow-unsigned"]],
      ["GET", ["credentials"]],
      ["GET", ["firmware"]],
      ["POST", ["firmware"]],
      ["DELETE", ["firmware", "abc"]],
      ["POST", ["update"]],
      ["POST", ["update", "line"]],
      ["GET", ["jobs"]],
      ["GET", ["jobs", "j-1"]],
      ["POST", ["jobs", "j-1", "cancel"]],
      ["GET", ["audit"]],
      ["GET", ["events"]],
      ["GET", ["rollouts"]],
      ["POST", ["rollouts"]],
      ["GET", ["rollouts", "r-1"]],
      ["POST", ["rollouts", "r-1", "pause"]],
      ["POST", ["rollouts", "r-1", "resume"]],
      ["POST", ["rollouts", "r-1", "abort"]],
    ];
    for (const [method, segments] of expected) {
      const found = API_ROUTES.match(method, segments);
      assert.ok(found && "route" in found, `${method} /${segments.join("/")}`);
    }
    const open = expected.filter(([method, segments]) => {
      const found = API_ROUTES.match(method, segments);
      return found && "route" in found && found.route.open;
    });
    assert.deepEqual(
      open.map(([m, s]) => `${m} /${s.join("/")}`),
      ["GET /session", "POST /login", "POST /logout"],
      "only the session routes answer without credentials",
    );
  });
});
