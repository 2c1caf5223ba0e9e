import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DEFAULT_SETTINGS,
  modulusCString,
  parseConfigH,
  renderConfigH,
} from "../../src/protocol/config-h.ts";
import { parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { readFixtureText } from "../support/fixtures.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));

describe("config.h", () => {
  test("the modulus string equals upstream's dump_modulus output", () => {
    const line = readFixtureText("reference/modulus.txt").trim();
    assert.equal(`#define MODULUS "${modulusCString(key)}"`, line);
    assert.equal(modulusCString(key).length, 64 * 4);
  });

  test("has every setting of upstream's config.h.example with its default", () => {
    const text = renderConfigH(key);
    for (const line of [
      "#define MAIN_APP_OFFSET 0x3c000",
      "#define BAUD_RATE 115200",
      "#define PKT_WAIT_MS 10000",
      "#define IDLE_REBOOT_MS 60000",
      "#define GPIO_MASK 0xf035",
      "#define GPIO_WAIT_MS 3000",
      `#define MODULUS "${modulusCString(key)}"`,
    ]) {
      assert.ok(text.split("\n").includes(line), `missing: ${line}`);
    }
  });

  test("round-trips through parseConfigH, settings included", () => {
    const settings = { ...DEFAULT_SETTINGS, baudRate: 921600, gpioMask: 0, mainAppOffset: 0x40000 };
    const parsed = parseConfigH(renderConfigH(key, settings));
    assert.deepEqual(parsed.settings, settings);
    assert.deepEqual(Buffer.from(parsed.key.modulus), Buffer.from(key.modulus));
  });

  test("reads upstream's example format, and explains a missing MODULUS", () => {
    const upstreamStyle = `#define MAIN_APP_OFFSET 0x3c000\n#define BAUD_RATE 115200\n${readFixtureText("reference/modulus.txt")}`;
    assert.equal(parseConfigH(upstreamStyle).key.bits, 512);
    assert.throws(() => parseConfigH("#define BAUD_RATE 115200\n", "my.h"), /my\.h has no "#define MODULUS"/);
    assert.throws(() => parseConfigH('#define MODULUS "abc"\n'), /\\xNN escapes/);
  });
});
