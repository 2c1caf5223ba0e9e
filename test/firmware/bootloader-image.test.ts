import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  analyzeBootloader,
  EXAMPLE_MODULUS,
  gpioPins,
  isYaotaBootloader,
} from "../../src/firmware/bootloader-image.ts";
import { isMicroPythonImage } from "../../src/firmware/micropython-image.ts";
import { parseConfigH } from "../../src/protocol/config-h.ts";
import { generateKeyPair, parsePrivateKeyPem } from "../../src/protocol/rsa-key.ts";
import { buildBootloaderImage } from "../support/bootloader-image.ts";
import { readFixtureText } from "../support/fixtures.ts";
import { buildMicroPythonImage } from "../support/images.ts";

const key = parsePrivateKeyPem(readFixtureText("reference/priv-pkcs8.key"));
const otherKey = generateKeyPair(512).key;
const yaota = buildBootloaderImage({ modulus: key.modulus });

describe("yaota8266.bin", () => {
  test("is told apart from a MicroPython image, and the other way round", () => {
    assert.equal(isYaotaBootloader(yaota), true);
    assert.equal(isMicroPythonImage(yaota), false);
    const app = buildMicroPythonImage({ size: 0x20000 });
    assert.equal(isYaotaBootloader(app), false);
    assert.equal(isYaotaBootloader(yaota.subarray(0, 0x1000)), true);
  });

  test("parts: boot8266 in one sector, the ota-server at 0x1000, its irom0 at 0x9000", () => {
    const a = analyzeBootloader(yaota);
    assert.deepEqual(
      a.parts.map((p) => [p.name, p.offset]),
      [
        ["boot8266", 0],
        ["ota-server", 0x1000],
        ["ota-server irom0", 0x9000],
      ],
    );
    assert.equal(a.parts[0]?.length, 0x1000);
    assert.equal(a.boot8266.espImage.end, 0x1000);
    assert.equal(a.otaServer.espImage?.segmentCount, 3);
    assert.equal(a.otaServer.irom0Offset, 0x9000);
    assert.equal(a.otaServer.irom0Length, 0x10000);
    assert.equal(a.contentEnd, yaota.length);
    assert.deepEqual([a.errors, a.keyErrors, a.warnings], [[], [], []]);
  });

  test("GPIO parameters are read from the .param area at 0xf00 and 0xf04", () => {
    const a = analyzeBootloader(yaota);
    assert.equal(a.boot8266.paramOffset, 0xf00);
    assert.equal(a.boot8266.gpioMask, 0xf035);
    assert.deepEqual(a.boot8266.gpioPins, [0, 2, 4, 5, 12, 13, 14, 15]);
    assert.equal(a.boot8266.gpioWaitMs, 3000);
    const custom = analyzeBootloader(
      buildBootloaderImage({ modulus: key.modulus, gpioMask: 0x1, gpioWaitMs: 500 }),
    );
    assert.deepEqual([custom.boot8266.gpioMask, custom.boot8266.gpioWaitMs], [1, 500]);
    assert.deepEqual(gpioPins(0x10004), [2, 16]);
  });

  test("gpio_mask 0 is flagged: OTA mode on every boot", () => {
    const a = analyzeBootloader(buildBootloaderImage({ modulus: key.modulus, gpioMask: 0 }));
    assert.equal(a.boot8266.gpioMask, 0);
    assert.match(a.warnings.join("\n"), /gpio_mask is 0: boot8266 enters OTA mode on every boot/);
  });

  test("MAIN_APP_OFFSET and the 800000 limit are read from boot8266's constants", () => {
    assert.equal(analyzeBootloader(yaota).boot8266.mainAppOffset, 0x3c000);
    assert.equal(analyzeBootloader(yaota).boot8266.hasSizeLimit, true);
    const moved = buildBootloaderImage({ modulus: key.modulus, mainAppOffset: 0x44000 });
    assert.equal(analyzeBootloader(moved).boot8266.mainAppOffset, 0x44000);
  });

  test("holds the key's modulus: found, with its offset", () => {
    const a = analyzeBootloader(yaota, { key });
    assert.equal(a.key?.found, true);
    assert.equal(a.key?.bits, 512);
    const at = a.key?.offset as number;
    assert.deepEqual(Buffer.from(yaota.subarray(at, at + 64)), Buffer.from(key.modulus));
    assert.deepEqual(a.keyErrors, []);
  });

  test("someone else's key: not found, and the error says every update would be dropped", () => {
    const a = analyzeBootloader(yaota, { key: otherKey });
    assert.deepEqual(a.key, { bits: 512, found: false, offset: null });
    assert.equal(a.keyErrors.length, 1);
    assert.match(
      a.keyErrors[0] as string,
      /does not hold the 512-bit modulus of the given key: it would silently drop every update signed with that key\. Use the key the bootloader was built with, or rebuild yaota8266/,
    );
  });

  test("a config.h modulus is found like a key's", () => {
    const configH = `#define MODULUS "${Array.from(key.modulus, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}"\n`;
    const a = analyzeBootloader(yaota, { key: parseConfigH(configH).key });
    assert.equal(a.key?.found, true);
  });

  test("built with config.h.example's modulus: an error even without a key", () => {
    const a = analyzeBootloader(buildBootloaderImage({ modulus: new Uint8Array(EXAMPLE_MODULUS) }));
    assert.equal(a.exampleKey, true);
    assert.match(a.keyErrors.join("\n"), /built with the example key from yaota8266's config\.h\.example/);
  });

  test("an ota-server image that ends too early puts its irom0 at the wrong place", () => {
    const a = analyzeBootloader(buildBootloaderImage({ modulus: key.modulus, serverIramLength: 0x5000 }));
    assert.equal(a.otaServer.irom0Offset, 0x7000);
    assert.match(
      a.errors.join("\n"),
      /irom0 text starts at 0x7000, but the ota-server is linked for 0x9000 \(0x40209000\): OTA mode would crash/,
    );
  });

  test("only the boot sector: no ota-server", () => {
    const a = analyzeBootloader(yaota.subarray(0, 0x1000));
    assert.match(a.errors.join("\n"), /holds only boot8266 \(one sector\) and no ota-server/);
  });

  test("a bootloader longer than MAIN_APP_OFFSET is an error", () => {
    const big = buildBootloaderImage({ modulus: key.modulus, irom0Length: 0x34000 });
    const a = analyzeBootloader(big);
    assert.match(a.errors.join("\n"), /content reaches 0x3d000, past MAIN_APP_OFFSET 0x3c000/);
  });

  test("a full flash image: the app at MAIN_APP_OFFSET is analysed too", () => {
    const app = buildMicroPythonImage({ size: 0x20000, seed: 5 });
    const full = new Uint8Array(0x3c000 + app.length).fill(0xff);
    full.set(yaota, 0);
    full.set(app, 0x3c000);
    const a = analyzeBootloader(full, { key });
    assert.equal(a.mainApp?.offset, 0x3c000);
    assert.equal(a.mainApp?.espImage.segments[0]?.fileOffset, 0x3c000 + 16);
    assert.equal(a.mainApp?.micropython?.trailer.status, "ok");
    assert.equal(a.mainApp?.micropython?.build.kind, "ota");
    assert.deepEqual(a.parts.at(-1), { name: "main app", offset: 0x3c000, length: app.length });
    assert.equal(a.key?.found, true);
  });
});
