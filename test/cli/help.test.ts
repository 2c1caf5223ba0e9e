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

  // An example copied from a help text has to run: `firmware add` refuses to
  // start without --name and --version, and `update` takes what it stored.
  test("help examples of `mpota firmware add` give the --name and --version it requires", async () => {
    let examples = 0;
    for (const path of paths) {
      const r = await runCli([...path, "--help"]);
      for (const line of r.stdout.split("\n")) {
        if (!/mpota firmware add [^\s[]/.test(line)) continue;
        examples++;
        assert.match(line, /--name \S+ --version \S+/, `mpota ${path.join(" ")} --help: ${line}`);
        const update = /mpota update \S+ (\S+)/.exec(line);
        if (update !== null)
          assert.match(update[1] as string, /@/, `mpota ${path.join(" ")} --help: ${line}`);
      }
    }
    assert.ok(examples >= 1, "no help text shows `mpota firmware add`");
  });

  test("a word after jobs, rollout or firmware that is no command of theirs: exit 2 naming the word and the commands", async () => {
    const jobs = await runCli(["jobs", "j-3f9a0c12d4"]);
    assert.equal(jobs.code, 2);
    assert.match(
      jobs.stderr,
      /^error: "j-3f9a0c12d4" is not a command of mpota jobs: give one of list, show, cancel; to see one: mpota jobs show j-3f9a0c12d4\.\n/,
    );
    const rollout = await runCli(["rollout", "r-3f9a0c12d4"]);
    assert.equal(rollout.code, 2);
    assert.match(
      rollout.stderr,
      /"r-3f9a0c12d4" is not a command of mpota rollout: give one of create, list, show, /,
    );
    const firmware = await runCli(["firmware", "show", "demo@2.0"]);
    assert.equal(firmware.code, 2);
    assert.match(
      firmware.stderr,
      /^error: "show" is not a command of mpota firmware: give one of add, list, remove\.\n/,
    );
    for (const r of [jobs, rollout, firmware]) assert.doesNotMatch(r.stderr, /too many arguments/);
  });

  test("an unknown command exits 2 and says so", async () => {
    const r = await runCli(["frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});
