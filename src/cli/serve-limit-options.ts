// The embedded broker's and the device registry's limits `mpota serve`'s options give, checked.
import { UsageError } from "../errors.ts";
import type { DeviceLimits } from "../server/devices/new-device-gate.ts";
import type { BrokerLimits } from "../server/mqtt/broker-limits.ts";
import type { ServeOptions } from "./serve-options.ts";

function range(value: number | undefined, flag: string, min: number, max: number): number | undefined {
  if (value !== undefined && (value < min || value > max))
    throw new UsageError(`${flag} must be between ${min} and ${max}.`);
  return value;
}

/** The embedded broker's limits given on the command line (docs/limits.md). */
export function brokerLimitOptions(options: ServeOptions): Partial<BrokerLimits> | undefined {
  const limits: Partial<BrokerLimits> = {};
  const packet = range(options.mqttMaxPacket, "--mqtt-max-packet", 1024, 1024 * 1024);
  if (packet !== undefined) limits.devicePacketBytes = packet;
  const retained = range(options.mqttMaxRetained, "--mqtt-max-retained", 64 * 1024, 1024 * 1024 * 1024);
  if (retained !== undefined) limits.retainedTotalBytes = retained;
  const connections = range(options.mqttMaxConnections, "--mqtt-max-connections", 16, 1_000_000);
  if (connections !== undefined) limits.connections = connections;
  if (Object.keys(limits).length === 0) return undefined;
  if (options.mqtt !== undefined)
    throw new UsageError(
      "--mqtt-max-packet, --mqtt-max-retained and --mqtt-max-connections bound the embedded broker; with --mqtt URL the server uses another broker, which keeps its own limits (Mosquitto: message_size_limit, max_packet_size, retain_available, max_connections).",
    );
  return limits;
}

/** The device registry's limits given on the command line. */
export function deviceLimitOptions(options: ServeOptions): Partial<DeviceLimits> {
  const limits: Partial<DeviceLimits> = {};
  const max = range(options.maxDevices, "--max-devices", 1, 1_000_000);
  if (max !== undefined) limits.maxDevices = max;
  const rate = range(options.newDevicesPerMinute, "--new-devices-per-minute", 1, 1_000_000);
  if (rate !== undefined) limits.newPerMinute = rate;
  return limits;
}
