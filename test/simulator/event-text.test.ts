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
      { type: "ack", ack: { job: "j-1", ready: true, ip: "127.0.1.2", port: 8266 } },
      "update job j-1 accepted: ready at 127.0.1.2:8266, resetting into OTA mode",
    ],
    [
      { type: "ack", ack: { job: "j-2", ready: false, error: "battery low" } },
      "update job j-2 refused: battery low",
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
