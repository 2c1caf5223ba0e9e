import { LeaseLostError, StorageError } from "./storage.ts";

/**
 * Refuses a change to a job or rollout (`what`: "Job", "Rollout") that does
 * not exist (`current` undefined) or whose lease `owner` does not hold;
 * `current` is its row's `lease_owner`, read in the changing transaction.
 */
export function checkLease(
  what: string,
  id: string,
  current: { lease_owner?: unknown } | undefined,
  owner: string,
): void {
  if (!current) throw new StorageError(`${what} ${id} does not exist.`);
  if (current.lease_owner !== owner) {
    throw new LeaseLostError(
      `${what} ${id} is held by ${current.lease_owner ?? "nobody"}, not ${owner}; the change was not made.`,
    );
  }
}
