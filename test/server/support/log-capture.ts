import { type Logger, pino } from "pino";

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose lines are kept for assertions: tests check what the server logged. */
export class LogCapture {
  readonly lines: LogLine[] = [];
  readonly logger: Logger;

  constructor(level = "debug") {
    this.logger = pino({ level }, { write: (s: string) => void this.lines.push(JSON.parse(s) as LogLine) });
  }

  /** Lines with this message (and these fields, if given). */
  find(msg: string, fields: Record<string, unknown> = {}): LogLine[] {
    return this.lines.filter((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  }

  /** Every line at warn (40) or above, as "msg: reason" text. */
  warnings(): string[] {
    return this.lines
      .filter((l) => l.level >= 40)
      .map((l) => `${l.msg}${l.reason ? `: ${String(l.reason)}` : ""}`);
  }
}
