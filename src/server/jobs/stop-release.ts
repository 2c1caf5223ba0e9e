import type { Logger } from "pino";
import { StorageUnavailableError } from "../storage/storage.ts";

/**
 * Gives this instance's leases back as it stops. With the database
 * unreachable that cannot be done, and need not be: a lease ends by itself
 * when it expires, and another instance (or this one, restarted) takes the
 * work over then. So the stop goes on, with a line in the log, instead of
 * failing and leaving the broker connection and the rest half stopped.
 */
export async function releaseOnStop(
  release: () => Promise<unknown>,
  logger: Logger,
  what: string,
): Promise<void> {
  try {
    await release();
  } catch (error) {
    if (!(error instanceof StorageUnavailableError)) throw error;
    logger.warn(
      { err: error.message },
      `${what} leases not given back while stopping: the database is unreachable; they expire by themselves and the work is taken over then`,
    );
  }
}
