import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MemoryIo } from "../../src/cli/io.ts";
import { buildProgram } from "../../src/cli/main.ts";
import { runCli } from "../support/cli.ts";

describe("every command has --help", () => {
  const program = buildProgram(new MemoryIo());
  const paths: string[][] = [];
  for (const command of program.commands) {
    paths.push([command.name()]);
    for (const sub of command.commands) paths.push([command.name(), sub.name()]);
  }

  test("the program lists its commands", async () => {
    const r = await runCli(["--help"]);
    assert.equal(r.code, 0);
    for (const [name] of paths) assert.match(r.stdout, new RegExp(`\\b${name}\\b`));
    assert.ok(paths.length >= 8, `only ${paths.length} commands`);
  });

  for (const path of paths) {
    test(`mpota ${path.join(" ")} --help`, async () => {
      const r = await runCli([...path, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: mpota ${path.join(" ")}`));
      assert.ok(r.stdout.length > 80, r.stdout);
    });
  }

  test("an unknown command exits 2 and says so", async () => {
    const r = await runCli(["frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});
