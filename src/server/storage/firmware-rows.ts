import type { FirmwareRecord } from "./storage.ts";

/** The rows of `firmware` as records and back, for both backends. */

type Row = Record<string, unknown>;

export function firmwareFromRow(row: Row): FirmwareRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    version: row.version as string,
    size: row.size as number,
    notes: row.notes as string | null,
    addedAt: row.added_at as number,
    micropython: row.micropython as string | null,
    build: row.build as string | null,
    checks: JSON.parse(row.checks as string),
    ...(typeof row.kind === "string" ? { kind: row.kind } : {}),
  };
}

/** The columns a firmware row is inserted with, and their values in that order. */
export const FIRMWARE_INSERT_COLUMNS =
  "id, name, version, size, notes, added_at, micropython, build, checks, kind";

export function firmwareValues(record: FirmwareRecord): Array<string | number | null> {
  return [
    record.id,
    record.name,
    record.version,
    record.size,
    record.notes,
    record.addedAt,
    record.micropython,
    record.build,
    JSON.stringify(record.checks),
    record.kind ?? null,
  ];
}
