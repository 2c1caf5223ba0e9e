// The emulator console's commands (ota, reset, button, ...) and what each does to the device.
import type { EmulatedDevice } from "../emulator/device.ts";
import { RTC_MAGIC } from "../firmware/rtc-memory.ts";
import type { EmulatorLog } from "./emulator-log.ts";

export const COMMANDS_HELP =
  'commands: "ota" (RTC magic + soft reset), "reset" (reset pin), "button" (GPIO change, within GPIO_WAIT_MS after "reset"), "deepsleep" (deep-sleep wake), "power" (power cycle), "status", "quit"';

/** As if the app had run `machine.RTC().memory(b"yaotaota"); machine.reset()` (or, without the RTC patch, the button was pressed). */
export function enterOta(device: EmulatedDevice, log: EmulatorLog, rtcMagic: boolean): void {
  if (!rtcMagic) {
    log.line("button pressed during the GPIO wait (this bootloader has no RTC magic)");
    device.reset("hard");
    device.pressButton();
    return;
  }
  log.line('RTC memory set to "yaotaota", soft reset');
  device.rtcMemory = RTC_MAGIC;
  device.reset("soft");
}

export function consoleCommand(
  device: EmulatedDevice,
  log: EmulatorLog,
  line: string,
  rtcMagic: boolean,
): "quit" | undefined {
  switch (line) {
    case "":
      return undefined;
    case "ota":
      if (device.state === "off") log.line('the device is off; use "power"');
      else enterOta(device, log, rtcMagic);
      return undefined;
    case "reset":
      if (device.state !== "off") device.reset("hard");
      return undefined;
    case "deepsleep":
      if (device.state !== "off") device.reset("deepsleep");
      return undefined;
    case "button":
      if (!device.pressButton()) {
        log.line(
          `button: nothing happens: boot8266 watches the GPIOs only for GPIO_WAIT_MS (${device.settings.gpioWaitMs} ms) after a reset. Type "reset" first, then "button" within that time.`,
        );
      }
      return undefined;
    case "power":
      device.powerOff();
      log.line("power off; power on");
      void device.powerOn();
      return undefined;
    case "status": {
      const r = device.receiverState;
      log.line(
        `state ${device.state}${r ? `, expecting offset ${r.expectedOffset}, ${r.buffered} bytes buffered` : ""}${device.app?.md5 ? `, app ${device.app.md5}` : ""}, ${device.stats.sectorsWritten} sectors written`,
      );
      return undefined;
    }
    case "quit":
    case "exit":
      return "quit";
    default:
      log.line(`unknown command "${line}"; ${COMMANDS_HELP}`);
      return undefined;
  }
}
