import { UsageError } from "../errors.ts";

/**
 * Refuses `192.168.1.50:8266` (the form the emulator's log and most tools
 * print) in an option that takes an address: the name resolver would turn
 * it into "does not resolve" or an internal error, which hides the real fix,
 * the --port option. A bare IPv6 address (two colons or more) passes.
 */
export function rejectPortInAddress(option: "--to" | "--bind", value: string): void {
  const text = value.trim();
  const withPort = /^\[(.+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (withPort === null) return;
  throw new UsageError(
    `${option} takes an address without a port: use ${option} ${withPort[1]} --port ${withPort[2]} (the port is 1 to 65535; 8266, the default, is yaota8266's).`,
  );
}
