import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { makeTempDir } from "../support/cli.ts";
import { InteractiveShell, linkedBin, SHELL_SKIP } from "./interactive-shell.ts";

/** The lines of the first ```sh block after `heading` in README.md, as a reader would copy them. */
function readmeBlock(heading: string): string[] {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.indexOf(`\n${heading}\n`);
  assert.ok(section >= 0, `README.md has no "${heading}"`);
  const start = readme.indexOf("```sh\n", section);
  const end = readme.indexOf("\n```", start + 6);
  return readme.slice(start + 6, end).split("\n");
}

// Slow (about a minute): the push runs at the emulated receiver's real pace
// (600 KiB over its UART-bound timing model, ~34 s), as the reader sees it.
describe("README: the seed article's steps, typed into an interactive shell", { skip: SHELL_SKIP }, () => {
  test("complete: the emulator started with & keeps running, the push lands and the device boots it", async () => {
    const lines = readmeBlock("## The seed article's steps, done with mpota");
    const emulate = lines.find((l) => l.startsWith("mpota emulate "));
    assert.ok(emulate?.endsWith("&"), "the walkthrough runs the emulator in the background");
    const tmp = makeTempDir("mpota-walkthrough-");
    const shell = InteractiveShell.start(tmp.dir, [linkedBin(tmp.dir)]);
    try {
      shell.type([...lines, 'echo "walkthrough exit: $?"', "jobs"]);
      const [, code] = await shell.waitFor(/walkthrough exit: (\d+)/, 120_000);
      const screen = shell.screen();
      assert.equal(code, "0", screen);
      assert.match(screen, /Wrote firmware-ota\.bin: synthetic MicroPython OTA image/);
      assert.match(screen, /firmware-ota\.bin on 1 MiB flash, MAIN_APP_OFFSET 0x3c000: OK/);
      assert.match(screen, /Signed .*firmware-ota\.bin with a 512-bit key/);
      assert.match(screen, /OTA mode, listening on 127\.0\.0\.2:8266/);
      assert.match(screen, /Update sent to 127\.0\.0\.2:8266/);
      assert.doesNotMatch(screen, /Stopped/);
      const identity = /identity ([0-9a-f]{32})/.exec(screen)?.[1];
      assert.ok(identity, screen);
      await shell.waitFor(new RegExp(`Running app ${identity}`), 15_000);
      await shell.waitFor(/\[1\]\+ +Running +mpota emulate/, 5000);
      shell.type(["kill %1", "wait", 'echo "emulator gone: $?"']);
      await shell.waitFor(/stopped: \d+ datagrams received, \d+ acks, \d+ sectors written/, 10_000);
      await shell.waitFor(/emulator gone: \d+/, 10_000);
    } finally {
      await shell.close();
      tmp.remove();
    }
  });

  test("without --no-console too: a background emulator does not touch the terminal, so the shell does not stop it", async () => {
    const tmp = makeTempDir("mpota-background-");
    const shell = InteractiveShell.start(tmp.dir, [linkedBin(tmp.dir)]);
    try {
      shell.type([
        "mpota keys new",
        "mpota emulate --key priv.key --bind 127.0.0.3 --port 0 &",
        "sleep 3",
        "echo typed while it runs in the background",
        "jobs",
      ]);
      await shell.waitFor(/running in the background: commands are not read from the terminal/, 20_000);
      await shell.waitFor(/\[1\]\+ +Running +mpota emulate/, 20_000);
      assert.doesNotMatch(shell.screen(), /Stopped/);
      shell.type(["kill %1", "wait", 'echo "emulator gone: $?"']);
      await shell.waitFor(/emulator gone: \d+/, 10_000);
    } finally {
      await shell.close();
      tmp.remove();
    }
  });
});
