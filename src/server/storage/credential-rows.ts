import { type AuditEntry, CredentialExistsError, type CredentialRecord, StorageError } from "./storage.ts";

/**
 * The rows of the trust tables (`device_credentials`, `audit`) as records,
 * and the checks both backends make before touching them, so the SQLite and
 * PostgreSQL stores share one mapping. SQLite gives `allow_unsigned` as
 * 0/1, PostgreSQL as a boolean; times and counters are numbers in both
 * (BIGINT is parsed as a number, see postgres-connection.ts).
 */

type Row = Record<string, unknown>;

export function credentialFromRow(row: Row): CredentialRecord {
  return {
    deviceId: row.device_id as string,
    hash: row.hash as string,
    createdAt: row.created_at as number,
    rotatedAt: row.rotated_at as number | null,
    commandSeq: row.command_seq as number,
    allowUnsigned: row.allow_unsigned === true || row.allow_unsigned === 1,
  };
}

export function auditFromRow(row: Row): AuditEntry {
  return {
    id: row.id as number,
    at: row.at as number,
    actor: row.actor as string,
    action: row.action as string,
    target: row.target as string | null,
    detail: row.detail === null ? null : (JSON.parse(row.detail as string) as Record<string, unknown>),
    outcome: row.outcome as AuditEntry["outcome"],
  };
}

/** The `detail` column's text (JSON), or null. */
export function auditDetailText(detail: AuditEntry["detail"]): string | null {
  return detail === null ? null : JSON.stringify(detail);
}

export function credentialExists(deviceId: string): CredentialExistsError {
  return new CredentialExistsError(
    `Device ${deviceId} already has a credential: nothing was changed. To give it a new secret, rotate its credential; to provision it from scratch, remove it first.`,
  );
}

/**
 * Refuses a counter floor no command counter can follow: commands carry
 * seq 1..2^53-1, so the floor (the seq a device reported) is 0..2^53-2.
 */
export function checkCommandSeqFloor(deviceId: string, atLeast: number): void {
  if (!Number.isSafeInteger(atLeast) || atLeast < 0 || atLeast >= Number.MAX_SAFE_INTEGER) {
    throw new StorageError(
      `Cannot issue a command counter for device ${deviceId} above ${atLeast}: the floor must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER - 1}. Nothing was changed.`,
    );
  }
}

/** The counter cannot go higher: every seq a command can carry was used. */
export function commandSeqExhausted(deviceId: string): StorageError {
  return new StorageError(
    `Device ${deviceId}'s command counter has reached ${Number.MAX_SAFE_INTEGER}, the largest a command can carry: no further signed command can be sent to it. Nothing was changed.`,
  );
}

/** Refuses a size or id that is not a whole number >= 0; `what` starts the message ("The audit list's limit"). */
export function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new StorageError(`${what} must be a whole number of 0 or more, not ${value}.`);
  }
}
