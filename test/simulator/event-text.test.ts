import assert from "node:assert/strict";
import { test } from "node:test";
import { describeEvent } from "../../src/simulator/event-text.ts";
import type { SimulatedEvent } from "../../src/simulator/simulated-events.ts";

test("each step of a device's life reads as one line", () => {
  const fw = "0123456789abcdef0123456789abcdef";
  const table: Array<[SimulatedEvent, string | undefined]> = [
    [
      {
        type: "boot",
        mode: "app",
        reason: "deep-sleep-wake",
        resetReason: 5,
        message: "deep-sleep wake: the main app starts at once, unchecked",
      },
      "boot8266 (deep-sleep wake): the main app starts at once, unchecked -> app",
    ],
    [
      {
        type: "boot",
        mode: "ota",
        reason: "app-invalid",
        resetReason: 4,
        message: "main app check failed: main app MD5 mismatch",
      },
      "boot8266 (soft restart): main app check failed: main app MD5 mismatch -> OTA receiver",
    ],
    [
      { type: "checkin", state: { v: 1, fw, ip: "127.0.1.2", wake: "deepsleep", sleep: 30 } },
      `checked in: fw ${fw}, ip 127.0.1.2, wake deepsleep, sleeps 30 s`,
    ],
    [
      {
        type: "checkin",
        state: { v: 3, fw, ip: "127.0.1.3", wake: "power", chip: "rp2", app: { board: "rp2", free: 9 } },
      },
      `checked in: fw ${fw}, ip 127.0.1.3, wake power, always on; chip rp2, no app yet`,
    ],
    [
      {
        type: "checkin",
        state: {
          v: 3,
          fw,
          ip: "127.0.1.3",
          wake: "power",
          app: { board: "esp32", name: "thermostat", ver: "1.4.0" },
        },
      },
      `checked in: fw ${fw}, ip 127.0.1.3, wake power, always on; app thermostat 1.4.0`,
    ],
    [
      { type: "ack", ack: { job: "j-1", ready: true, ip: "127.0.1.2", port: 8266 } },
      "update job j-1 accepted: ready at 127.0.1.2:8266, resetting into OTA mode",
    ],
    [
      { type: "ack", ack: { job: "j-2", ready: false, error: "battery low" } },
      "update job j-2 refused: battery low",
    ],
    [
      { type: "ack", ack: { job: "j-3", ready: true, pull: true } },
      "update job j-3 accepted: the device fetches it itself",
    ],
    [
      { type: "ack", ack: { job: "j-3", got: 65536, total: 1466432 } },
      "update job j-3: 65536 of 1466432 bytes",
    ],
    [
      { type: "ack", ack: { job: "j-4", got: 2048, total: 20000, files: 2, of: 20 } },
      "update job j-4: file 2 of 20, 2048 of 20000 bytes",
    ],
    [
      { type: "ack", ack: { job: "j-4", got: 20000, total: 20000, files: 20, of: 20, done: true } },
      "update job j-4 fetched: file 20 of 20, 20000 of 20000 bytes; switching",
    ],
    [
      { type: "ack", ack: { job: "j-4", error: "OSError(113,)", final: false } },
      "update job j-4 stopped: OSError(113,) (it tries again)",
    ],
    [
      { type: "ack", ack: { job: "j-5", error: "signed by a key not in APP_KEYS", final: true } },
      "update job j-5 stopped: signed by a key not in APP_KEYS (for good)",
    ],
    [
      { type: "push-received", bytes: 614400, sectors: 150, ms: 33_300 },
      "update received: 614400 bytes, 150 sectors written in 33 s; rebooting",
    ],
    [{ type: "firmware-changed", from: undefined, to: fw }, `new firmware running: ${fw} (was none)`],
    [{ type: "deepsleep", ms: 2500 }, "deep sleep for 2.5 s"],
    [{ type: "deepsleep", ms: null }, "deep sleep until reset"],
    [{ type: "output", line: "mpota: offline: OSError(113,)\n" }, "agent: mpota: offline: OSError(113,)"],
    [{ type: "output", line: "  " }, undefined],
    [{ type: "app-start", fw, checked: true, wake: "soft" }, undefined],
  ];
  for (const [event, line] of table) assert.equal(describeEvent(event), line, event.type);
});
