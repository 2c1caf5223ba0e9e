/** What a simulated device is made of: its broker, flash, config, files, filesystem, WiFi and clock. */
import type { Clock } from "../net/clock.ts";
import type { PythonValue } from "./agent-files.ts";
import type { BrokerAddress } from "./broker-address.ts";
import type { DeviceFilesystem, FilesystemKind } from "./device-filesystem.ts";
import type { Esp32BoardPort } from "./esp32-board-port.ts";
import type { FlashSource } from "./flash-source.ts";
import type { MicroPythonRelease } from "./micropython-release.ts";
import type { BoardChip } from "./worker-protocol.ts";

export interface WifiOptions {
  /** WLAN.isconnected() (default true: the ESP8266 keeps its WiFi credentials). */
  connected: boolean;
  ip: string;
  netmask: string;
  gateway: string;
  dns: string;
  /** WLAN.status("rssi") */
  rssi: number;
}

export interface AgentDeviceOptions {
  /** The broker the agent connects to: `mqtt://[user:password@]host[:port]` or its parts. */
  broker: string | BrokerAddress;
  /** The device's flash: a Uint8Array (read live), a file path, or a {@link FlashSource}; an ESP32 reads its board's; rp2 has none to read. */
  flash?: Uint8Array | string | FlashSource;
  /**
   * The chip (default "esp8266"). "esp32" gives the interpreter the ESP32's
   * modules (machine values, esp, esp32.Partition on `esp32`, sys.platform,
   * os.uname) and needs `esp32`; "rp2" a Raspberry Pi Pico W's
   * (python-rp2-fakes.ts: no esp module, no RTC memory, no flash to read).
   */
  chip?: BoardChip;
  /**
   * The ESP32's board (the emulator's Esp32Board): flash, partition table,
   * otadata. Its bootloader is not run here: whoever boots the device (the
   * simulator) runs it, so `autoRestart` and `autoWake` default to false.
   */
  esp32?: Esp32BoardPort;
  /** rp2: MICROPY_HW_BOARD_NAME of the build (default "Raspberry Pi Pico W"; os.uname().machine adds " with RP2040"). */
  boardName?: string;
  /** DEVICE_ID in mpota_config.py; default none, so the agent uses the hex of unique_id(). */
  id?: string;
  /** machine.unique_id(), 4 bytes (ESP32: 6, the MAC; rp2: 8, the flash chip's id); default derived from `id`. */
  uniqueId?: Uint8Array;
  /** RTC memory at the first power-on (default empty). */
  rtc?: Uint8Array;
  /** SLEEP: seconds between wakes of a deep-sleeping device; 0 (default): always on. */
  sleepSeconds?: number;
  /** Battery voltage the agent reads through ADC(0); absent: no battery reader configured. */
  vbat?: number;
  /** MIN_VBAT: the agent refuses an update below it. */
  minVbat?: number;
  baseTopic?: string;
  cmdWaitMs?: number;
  keepalive?: number;
  mainAppOffset?: number;
  /** CMD_KEYS: moduli (hex) of the keys the agent accepts signed commands from; default none. */
  commandKeys?: readonly string[];
  /**
   * APP_KEYS: moduli (hex) of the app keys the board trusts. Given, the board
   * runs apps: it holds the app loader and updater (APP_FILES, and on an
   * ESP8266 the update boot), and its main.py (unless `main`) runs the
   * loader, then the agent.
   */
  appKeys?: readonly string[];
  /** ALLOW_UNSIGNED: act on unsigned (contract v1) commands too; default false, as the agent's own default. */
  allowUnsigned?: boolean;
  /** More mpota_config.py settings; they win over the ones above. */
  config?: Record<string, PythonValue>;
  /** main.py; default device/examples/sleepy_main.py when sleepSeconds > 0, else always_on_main.py. */
  main?: string;
  /**
   * How long a sleepy device stays awake after check-in, as if reading a slow
   * sensor (the default sleepy main.py then calls machine.lightsleep(awakeMs)).
   */
  awakeMs?: number;
  /** More files on the device (path -> text), e.g. boot.py. */
  files?: Record<string, string>;
  /**
   * The device's filesystem: its kind (default "littlefs", as MicroPython formats a fresh
   * ESP8266), or one to use. The agent's files are written into it when the device is made;
   * it keeps what the device writes across resets, deep sleeps and power cuts.
   */
  filesystem?: FilesystemKind | DeviceFilesystem;
  wifi?: Partial<WifiOptions>;
  /** esp.flash_size(); default the size of `flash`. */
  flashSize?: number;
  /** esp.flash_user_start(): where the filesystem starts; default 0xd4000 (v1.27 OTA build). */
  flashUserStart?: number;
  /** The MicroPython the device runs (default "1.27"; "1.29" is a development dependency). */
  micropython?: MicroPythonRelease;
  /** os.uname().version; default the banner of `micropython`'s build. */
  version?: string;
  /** After deepsleep(ms), boot with DEEPSLEEP_RESET when ms have passed on `clock` (default true). */
  autoWake?: boolean;
  /** After machine.reset() without the OTA magic, boot again with SOFT_RESET (default true). */
  autoRestart?: boolean;
  /** Times deep-sleep wakes (default the system clock). Sockets and MicroPython run on real time. */
  clock?: Clock;
  /** Where the agent's files are (default the package's device/). */
  deviceDir?: string;
}

export const DEFAULT_WIFI: WifiOptions = {
  connected: true,
  ip: "127.0.0.1",
  netmask: "255.255.255.0",
  gateway: "127.0.0.1",
  dns: "127.0.0.1",
  rssi: -61,
};
