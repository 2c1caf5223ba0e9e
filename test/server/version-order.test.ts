import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareVersions } from "../../src/server/releases/version-order.ts";
import { readFixtureText } from "../support/fixtures.ts";

const { cases } = JSON.parse(readFixtureText("version-order.json")) as {
  cases: Array<[string, string, number]>;
};

describe("the one version order (server and device agent)", () => {
  it("gives every row of test/fixtures/version-order.json, both ways round", () => {
    assert.ok(cases.length >= 20);
    for (const [a, b, expected] of cases) {
      assert.equal(Math.sign(compareVersions(a, b)), expected, `${a} vs ${b}`);
      assert.equal(Math.sign(compareVersions(b, a)), expected === 0 ? 0 : -expected, `${b} vs ${a}`);
    }
  });

  it("is a consistent order on the table's versions: no cycle, equality transitive", () => {
    const versions = [...new Set([...cases.map(([a]) => a), ...cases.map(([, b]) => b)])];
    const c = (x: string, y: string) => Math.sign(compareVersions(x, y));
    for (const a of versions)
      for (const b of versions)
        for (const d of versions) {
          if (c(a, b) <= 0 && c(b, d) <= 0) {
            const expected = c(a, b) === 0 && c(b, d) === 0 ? 0 : -1;
            assert.equal(c(a, d), expected, `${a} ≤ ${b} ≤ ${d}, so ${a} vs ${d}`);
          }
        }
  });
});
