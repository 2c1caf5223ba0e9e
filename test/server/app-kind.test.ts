import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import type { DeviceState } from "../../src/protocol/mqtt-contract.ts";
import { appKind } from "../../src/server/releases/app-kind.ts";

const key = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }).privateKey;
const file = (path: string, size: number) => ({ path, size, sha256: "c".repeat(64) });
const bytecode = signAppManifest(
  {
    name: "thermostat",
    version: "1.4.0",
    boards: ["esp32", "esp8266"],
    mpy: { version: 6, arch: 0, subVersion: 0 },
    files: [file("main.py", 1000), file("lib/a.mpy", 9000)],
  },
  key,
).bytes;
const native = signAppManifest(
  {
    name: "thermostat",
    version: "1.5.0",
    boards: ["esp32"],
    mpy: { version: 6, arch: 10, subVersion: 3 },
    files: [file("main.py", 1000), file("n.mpy", 500)],
  },
  key,
).bytes;
const state = (app?: DeviceState["app"], v: 2 | 3 = 3): DeviceState => ({
  v,
  fw: "a".repeat(32),
  ip: "10.0.0.5",
  ...(app ? { app } : {}),
});
const S = "thermostat 1.4.0";

describe("the app release kind: checkDevice by what the device reports", () => {
  it("takes a device whose board, .mpy version and room fit", () => {
    appKind.checkDevice(bytecode, state({ board: "esp8266", mpy: 0x2706, free: 10_000 }), S);
    appKind.checkDevice(native, state({ board: "esp32", mpy: 0x2b06 }), S);
    // Nothing reported but the app field itself: the board checks the rest before any write.
    appKind.checkDevice(bytecode, state({}), S);
  });

  it("refuses an agent that does not report its app, another board, another .mpy version or arch, too little room", () => {
    assert.throws(() => appKind.checkDevice(bytecode, state(undefined, 2), S), {
      message: `${S}: the device reports contract v2 without its app (the state's "app"): mpota's app loader is not on the board, so it cannot fetch an app release. Copy the app modules and examples/app_main.py as main.py to it beside the agent (device/README.md, "Apps") and restart it.`,
    });
    assert.throws(() => appKind.checkDevice(bytecode, state({ board: "rp2" }), S), {
      message: `${S}: thermostat 1.4.0 is for esp32, esp8266; the device is a rp2 board. Add the release again with --board rp2 if its files run there.`,
    });
    assert.throws(() => appKind.checkDevice(bytecode, state({ board: "esp32", mpy: 0x2b05 }), S), {
      message: `${S}: its .mpy files are version 6; the device's MicroPython loads version 5. Compile them with the mpy-cross of the device's MicroPython, or update its firmware first.`,
    });
    assert.throws(
      () => appKind.checkDevice(native, state({ board: "esp32", mpy: 0x2706 }), S),
      /its native .mpy code is for architecture 10 sub-version 3; the device runs architecture 9 sub-version 3/,
    );
    assert.throws(() => appKind.checkDevice(bytecode, state({ board: "esp8266", free: 9_999 }), S), {
      message: `${S}: thermostat 1.4.0 is 10000 bytes; the device reports 9999 bytes free for a new app. Free space on the device, or make the app smaller.`,
    });
  });
});
