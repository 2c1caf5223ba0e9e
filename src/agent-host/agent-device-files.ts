/** The files a simulated device starts with: the agent, its mpota_config.py, main.py and any extra files. */
import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import type { AgentDeviceOptions } from "./agent-device-options.ts";
import {
  DEVICE_DIR,
  EXAMPLE_MAINS,
  type PythonValue,
  readAgentFiles,
  readDeviceFile,
  renderConfig,
} from "./agent-files.ts";
import { AgentHostError } from "./agent-host-error.ts";
import type { BrokerAddress } from "./broker-address.ts";

/** The example sleepy main.py, staying awake `awakeMs` longer before it publishes. */
function sleepyMain(example: string, awakeMs: number): string {
  if (awakeMs <= 0) return example;
  const publish = /^( *)agent\.publish\(/m.exec(example);
  if (!publish)
    throw new AgentHostError("device/examples/sleepy_main.py has no agent.publish( line to delay.");
  const at = publish.index;
  return `${example.slice(0, at)}${publish[1]}machine.lightsleep(${Math.round(awakeMs)})\n${example.slice(at)}`;
}

/** Whether the board loads the update boot: APP_UPDATE_BOOT of its config, as the agent reads it (default: an ESP8266). */
function updateBoot(o: AgentDeviceOptions): boolean {
  const set = o.config?.APP_UPDATE_BOOT;
  if (set === undefined) return (o.chip ?? "esp8266") === "esp8266";
  // Python's truth: None, False, 0, "" and () are false.
  return !(
    set === null ||
    set === false ||
    set === 0 ||
    set === "" ||
    (Array.isArray(set) && set.length === 0)
  );
}

/** mpota_config.py from the options (their `config` wins), main.py, the agent and `files`. */
export function agentDeviceFiles(o: AgentDeviceOptions, broker: BrokerAddress): Record<string, string> {
  const dir = o.deviceDir ?? DEVICE_DIR;
  const sleepSeconds = o.sleepSeconds ?? 0;
  const config: Record<string, PythonValue> = {
    MQTT_HOST: broker.host,
    MQTT_PORT: broker.port,
    MQTT_USER: broker.username ?? null,
    MQTT_PASSWORD: broker.password ?? null,
    DEVICE_ID: o.id ?? null,
    BASE_TOPIC: o.baseTopic ?? "mpota",
    SLEEP: sleepSeconds,
    MIN_VBAT: o.minVbat ?? 0,
    // ADC(0) counts 0..1024; the host reports the battery as round(volts * 256). A Pico W
    // reads VSYS/3 in read_u16() counts of 3.3 V (mpota_rp2.read).
    VBAT_ADC_SCALE: o.vbat === undefined ? null : o.chip === "rp2" ? (3 * 3.3) / 65535 : 1 / 256,
    CMD_WAIT_MS: o.cmdWaitMs ?? 500,
    MAIN_APP_OFFSET: o.mainAppOffset ?? DEFAULT_MAIN_APP_OFFSET,
    KEEPALIVE: o.keepalive ?? 60,
    CMD_KEYS: o.commandKeys ?? [],
    ALLOW_UNSIGNED: o.allowUnsigned ?? false,
    ...(o.appKeys ? { APP_KEYS: o.appKeys } : {}),
    ...o.config,
  };
  const main =
    o.main ??
    (o.appKeys
      ? readDeviceFile(EXAMPLE_MAINS.app, dir)
      : sleepSeconds > 0
        ? sleepyMain(readDeviceFile(EXAMPLE_MAINS.sleepy, dir), o.awakeMs ?? 0)
        : readDeviceFile(EXAMPLE_MAINS.alwaysOn, dir));
  return {
    ...readAgentFiles(dir, o.chip, o.appKeys !== undefined, updateBoot(o)),
    "mpota_config.py": renderConfig(config),
    "main.py": main,
    ...o.files,
  };
}
