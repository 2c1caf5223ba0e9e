import { RESET_REASON_NAMES } from "../emulator/boot.ts";
import type { SimulatedEvent } from "./simulated-events.ts";

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
const str = (v: unknown) => (typeof v === "string" || typeof v === "number" ? String(v) : "?");

/** A board that runs apps reports its chip and its app (v3 state); others say nothing of either. */
function appText(state: Record<string, unknown>): string {
  const app = state.app;
  if (typeof app !== "object" || app === null) return "";
  const { name, ver } = app as Record<string, unknown>;
  const chip = typeof state.chip === "string" ? `chip ${state.chip}, ` : "";
  return `; ${chip}${typeof name === "string" ? `app ${name} ${str(ver)}` : "no app yet"}`;
}

/**
 * An ack: a push's ready (the ESP8266 waits in OTA mode) or a pull's (the
 * ESP32 and the Pico W fetch it themselves), a refusal, or a pull's
 * progress, end or error (docs/mqtt.md "Acks").
 */
function ackText(a: Record<string, unknown>): string {
  const job = `update job ${str(a.job)}`;
  if (a.ready === true) {
    return a.pull === true
      ? `${job} accepted: the device fetches it itself`
      : `${job} accepted: ready at ${str(a.ip)}:${str(a.port)}, resetting into OTA mode`;
  }
  if (a.ready === false) return `${job} refused: ${str(a.error)}`;
  if (a.error !== undefined) {
    return `${job} stopped: ${str(a.error)}${a.final === true ? " (for good)" : " (it tries again)"}`;
  }
  const files = typeof a.of === "number" && a.of > 0 ? `file ${str(a.files)} of ${str(a.of)}, ` : "";
  const bytes = `${str(a.got)} of ${str(a.total)} bytes`;
  return a.done === true ? `${job} fetched: ${files}${bytes}; switching` : `${job}: ${files}${bytes}`;
}

/**
 * One line saying what happened to a simulated device, for people watching
 * the simulator; undefined for events not worth a line.
 */
export function describeEvent(event: SimulatedEvent): string | undefined {
  switch (event.type) {
    case "power-on":
      return "power on";
    case "power-off":
      return "power off";
    case "boot": {
      const reason = RESET_REASON_NAMES[event.resetReason] ?? `reset reason ${event.resetReason}`;
      // "deep-sleep wake: the main app starts at once" already names the reason.
      const message = event.message.startsWith(`${reason}: `)
        ? event.message.slice(reason.length + 2)
        : event.message;
      return `boot8266 (${reason}): ${message} -> ${event.mode === "ota" ? "OTA receiver" : "app"}`;
    }
    case "app-start":
      return undefined;
    case "esp32-boot": {
      const how = event.fastBoot ? "deep-sleep wake, otadata not read" : event.log.join("; ");
      return `bootloader: ${how} -> ${event.partition ?? "nothing bootable"}`;
    }
    case "panic":
      return `firmware ${event.fw ?? "?"} panicked at start-up: ${event.message}`;
    case "checkin": {
      const s = event.state;
      const sleep = typeof s.sleep === "number" && s.sleep > 0 ? `, sleeps ${s.sleep} s` : ", always on";
      return `checked in: fw ${str(s.fw)}, ip ${str(s.ip)}, wake ${str(s.wake)}${sleep}${appText(s)}`;
    }
    case "ack":
      return ackText(event.ack);
    case "ota-listening":
      return `OTA mode: receiver listening on ${event.endpoint.address}:${event.endpoint.port}`;
    case "push-started":
      return `receiving an update from ${event.from.address}:${event.from.port}`;
    case "push-restarted":
      return `receiver restarted its session after PKT_WAIT_MS of silence (${event.buffered} bytes left in its buffer: a push that starts over now is corrupted)`;
    case "push-received":
      return `update received: ${event.bytes} bytes, ${event.sectors} sectors written in ${seconds(event.ms)}; rebooting`;
    case "firmware-changed":
      return event.to === undefined
        ? "the app in flash has no valid MD5 trailer"
        : `new firmware running: ${event.to} (was ${event.from ?? "none"})`;
    case "deepsleep":
      return event.ms === null ? "deep sleep until reset" : `deep sleep for ${seconds(event.ms)}`;
    case "output":
      return event.line.trim() === "" ? undefined : `agent: ${event.line.trimEnd()}`;
    case "halted":
      return `halted: ${event.reason}`;
    case "warning":
      return `warning: ${event.message}`;
  }
}
