// The MQTT 5 shared-subscription group of servers sharing one database and broker.
import { UsageError } from "../errors.ts";
import type { ServeOptions } from "./serve-options.ts";

const GROUP_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** The shared-subscription group used when several servers share a PostgreSQL database and a broker. */
export const DEFAULT_SHARED_GROUP = "mpota";

/**
 * The instances' shared-subscription group: as given, none with
 * --no-shared-group, and by default "mpota" when the server runs on
 * PostgreSQL with an external broker (the set-up several instances share).
 */
export function sharedGroupOf(options: ServeOptions): string | undefined {
  if (options.sharedGroup === false) return undefined;
  if (typeof options.sharedGroup === "string") {
    if (!GROUP_PATTERN.test(options.sharedGroup)) {
      throw new UsageError(
        `"${options.sharedGroup}" cannot be a shared-subscription group: use 1 to 64 letters, digits, "_" or "-".`,
      );
    }
    return options.sharedGroup;
  }
  return options.db && options.mqtt !== undefined ? DEFAULT_SHARED_GROUP : undefined;
}
