import assert from "node:assert/strict";
import { test } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { AgentDeviceOptions } from "../../src/agent-host/agent-device-options.ts";
import { Esp32Board } from "../../src/emulator/esp32-board.ts";

// What each simulated board that runs apps holds on its filesystem: the
// files it uses and no others, as device/README.md tells a user to copy
// them. The update boot (mpota_appboot.py) is the ESP8266's unless
// APP_UPDATE_BOOT in mpota_config.py says otherwise.

const APP = [
  "mpota_app.py",
  "mpota_appget.py",
  "mpota_appjob.py",
  "mpota_http.py",
  "mpota_loader.py",
  "mpota_stage.py",
];

function files(options: Partial<AgentDeviceOptions>): string[] {
  // Never powered on: the files are written when the device is made.
  const d = new AgentDevice({ broker: "mqtt://127.0.0.1:1", appKeys: [], ...options });
  return d.fs
    .files()
    .map((f) => f.replace(/^\//, ""))
    .filter((f) => f !== "main.py" && f !== "mpota_config.py");
}

const sorted = (list: string[]) => [...list].sort();

test("an app board holds the agent, the loader and the updater; the update boot only on an ESP8266", () => {
  assert.deepEqual(
    files({ flash: new Uint8Array(0x100000) }),
    sorted(["lib/umqtt/simple.py", "mpota_agent.py", "mpota_appboot.py", "mpota_cmd.py", "ota.py", ...APP]),
  );
  assert.deepEqual(
    files({ chip: "esp32", esp32: new Esp32Board() }),
    sorted(["lib/umqtt/simple.py", "mpota_agent.py", "mpota_cmd.py", "mpota_pull.py", ...APP]),
  );
  assert.deepEqual(
    files({ chip: "rp2" }),
    sorted(["lib/umqtt/simple.py", "mpota_agent.py", "mpota_cmd.py", "mpota_rp2.py", ...APP]),
  );
});

test("APP_UPDATE_BOOT in the config decides: on, an ESP32 gets the update boot; off, an ESP8266 does without", () => {
  assert.ok(
    files({ chip: "esp32", esp32: new Esp32Board(), config: { APP_UPDATE_BOOT: true } }).includes(
      "mpota_appboot.py",
    ),
  );
  assert.ok(
    !files({ flash: new Uint8Array(0x100000), config: { APP_UPDATE_BOOT: false } }).includes(
      "mpota_appboot.py",
    ),
  );
  assert.ok(!files({ chip: "rp2", config: { APP_UPDATE_BOOT: 0 } }).includes("mpota_appboot.py"));
});

test("a board without APP_KEYS holds no app files at all", () => {
  const d = new AgentDevice({ broker: "mqtt://127.0.0.1:1", chip: "rp2" });
  assert.deepEqual(
    d.fs.files().filter((f) => /^\/mpota_(app|loader|stage|http)/.test(f)),
    [],
  );
});
