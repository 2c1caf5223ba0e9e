import type { IPublishPacket } from "mqtt";

/** A message as the broker delivered it, before its payload is read. */
export interface RawMessage {
  topic: string;
  bytes: Buffer;
  /** The broker replayed it as the topic's retained message. */
  retained: boolean;
}

/** A message whose payload was read and checked: what subscription handlers receive. */
export interface Inbound<P> extends RawMessage {
  payload: P;
  /** Optional parts the reader dropped as invalid (the rest of the payload is good). */
  warnings: readonly string[];
  packet: IPublishPacket;
}

/**
 * The outcome of reading a payload: the value; or why it was refused, and
 * the log line that says so (default "message ignored"); or null when the
 * message is none of the subscriber's business (a cleared retained message,
 * the server's own topic under a device filter), dropped without a word.
 */
export type Reading<P> =
  | { ok: true; value: P; warnings: string[] }
  | { ok: false; reason: string; log?: string }
  | null;

/** Reads and checks one topic's payload: the contract's validation, before any handler sees it. */
export type PayloadReader<P> = (message: RawMessage) => Reading<P>;

/** The same reader, refusing without a log line: for observers beside the subscriber that logs. */
export function quietly<P>(read: PayloadReader<P>): PayloadReader<P> {
  return (message) => {
    const reading = read(message);
    return reading?.ok === false ? null : reading;
  };
}

/**
 * Reads a JSON object the server itself published (progress, replies, its
 * state), checked by `is`. Empty payloads (cleared retained messages) are
 * skipped; so is anything else, without a log line: another program on the
 * broker may use the topic, and the server must not be stopped by it.
 */
export function serverJson<P>(is: (value: Record<string, unknown>) => boolean): PayloadReader<P> {
  return ({ bytes }) => {
    if (bytes.length === 0) return null;
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString("utf8"));
    } catch {
      return null;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    return is(value as Record<string, unknown>) ? { ok: true, value: value as P, warnings: [] } : null;
  };
}
