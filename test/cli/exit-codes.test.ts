import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { MpotaError } from "../../src/errors.ts";
import { EXIT_CODES, type ExitCodeName } from "../../src/exit-codes.ts";
import { makeTempDir, runCli } from "../support/cli.ts";

const root = new URL("../../", import.meta.url).pathname;
const src = join(root, "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

type ErrorClass = new (...args: never[]) => MpotaError;

/** Every exported error class of src, loaded from the modules that declare one. */
async function errorClasses(): Promise<Map<ErrorClass, string>> {
  const classes = new Map<ErrorClass, string>();
  for (const file of sourceFiles(src)) {
    if (!/export class \w+ extends \w*Error\b/.test(readFileSync(file, "utf8"))) continue;
    const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (typeof value === "function" && value.prototype instanceof MpotaError)
        classes.set(value as ErrorClass, `${name} (${relative(root, file)})`);
    }
  }
  classes.set(MpotaError, "MpotaError (src/errors.ts)");
  return classes;
}

function codeOf(errorClass: ErrorClass): number {
  // Every error class takes the message first; the code is a field set by the constructor.
  return new (errorClass as unknown as new (message: string) => MpotaError)("probe").exitCode;
}

/** The README's exit-code table: code -> meaning. */
function readmeTable(): Map<number, string> {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.split(/^### Exit codes$/m)[1]?.split(/^#/m)[0];
  assert.ok(section, "README.md has a '### Exit codes' section");
  const rows = new Map<number, string>();
  for (const line of section.split("\n")) {
    const m = /^\|\s*(\d+)\s*\|\s*(.+?)\s*\|$/.exec(line);
    if (!m) continue;
    assert.ok(!rows.has(Number(m[1])), `README lists exit code ${m[1]} twice`);
    rows.set(Number(m[1]), m[2] as string);
  }
  return rows;
}

describe("exit codes", () => {
  const entries = Object.entries(EXIT_CODES) as Array<[ExitCodeName, { code: number; meaning: string }]>;

  test("one table, one meaning per code", () => {
    const byCode = new Map<number, string>();
    for (const [name, { code, meaning }] of entries) {
      // 126 and up are the shell's; 141 (128 + SIGPIPE) is what a shell reports for `| head`.
      const shellLike = name === "closedPipe" && code === 141;
      assert.ok(
        Number.isInteger(code) && ((code >= 0 && code <= 125) || shellLike),
        `${name}: ${code} is no exit code`,
      );
      assert.ok(meaning.length > 0, `${name} says what it means`);
      assert.equal(byCode.get(code), undefined, `${name} and ${byCode.get(code)} share ${code}`);
      byCode.set(code, name);
    }
  });

  test("no two error classes share a code, unless one inherits it from the other", async () => {
    const classes = await errorClasses();
    assert.ok(classes.size > 40, `only ${classes.size} error classes found`);
    const byCode = new Map<number, ErrorClass[]>();
    for (const errorClass of classes.keys()) {
      const code = codeOf(errorClass);
      byCode.set(code, [...(byCode.get(code) ?? []), errorClass]);
    }
    const tableCodes = new Map(entries.map(([name, e]) => [e.code, name]));
    for (const [code, group] of byCode) {
      const names = group.map((c) => classes.get(c)).join(", ");
      assert.ok(tableCodes.has(code), `${names}: exit code ${code} is not in src/exit-codes.ts`);
      // The class the others inherit the code from: one meaning, one declaration.
      const owner = group.find((c) => group.every((o) => o === c || o.prototype instanceof c));
      assert.ok(
        owner,
        `exit code ${code} (${tableCodes.get(code)}) is declared by unrelated classes: ${names}`,
      );
    }
    // Every meaning but the CLI's own (success, unexpected, a closed pipe) belongs to a class.
    const own = ["success", "unexpected", "closedPipe"];
    const unowned = entries
      .filter(([name, e]) => !byCode.has(e.code) && !own.includes(name))
      .map(([name]) => name);
    assert.deepEqual(unowned, [], "table entries no error class uses");
  });

  test("the classes take their numbers from the table, never from a literal", () => {
    const literals = sourceFiles(src).flatMap((file) =>
      readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => /exitCode\b[^=\n]*=\s*\d/.test(line))
        .map((line) => `${relative(root, file)}: ${line.trim()}`),
    );
    assert.deepEqual(literals, []);
  });

  test("the README's table is the table", () => {
    const documented = readmeTable();
    const source = new Map(entries.map(([, e]) => [e.code, e.meaning]));
    assert.deepEqual(
      [...documented.keys()].sort((a, b) => a - b),
      [...source.keys()].sort((a, b) => a - b),
    );
    for (const [code, meaning] of source) assert.equal(documented.get(code), meaning, `exit code ${code}`);
  });

  test("what a user sees: usage 2, file 3, and 49 for a refused command-key promote", async () => {
    assert.equal((await runCli(["inspect"])).code, 2);
    const missing = await runCli(["inspect", "/nonexistent/yaota8266.bin"]);
    assert.equal(missing.code, 3, missing.stderr);
    const data = makeTempDir();
    try {
      const promote = await runCli(["command-key", "promote", "--data", data.dir]);
      assert.equal(promote.code, 49);
      assert.match(
        promote.stderr,
        /There is no next command key in .*: start a rotation with `mpota command-key rotate` first\./,
      );
    } finally {
      data.remove();
    }
  });
});
