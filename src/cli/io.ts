/** Where a command writes. Tests pass their own; the CLI uses the process streams. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** True when stderr is a terminal (progress bars), false for pipes and logs. */
  readonly interactive: boolean;
  readonly stderr: NodeJS.WritableStream;
  /** The terminal's width when stdout is one; undefined for pipes and files (tables are laid out for 100). */
  readonly columns?: number | undefined;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  get interactive() {
    return process.stderr.isTTY === true;
  },
  get columns() {
    return process.stdout.isTTY === true ? process.stdout.columns : undefined;
  },
  stderr: process.stderr,
};

/** Collects output in memory, for tests. */
export class MemoryIo implements CliIo {
  stdout = "";
  stderrText = "";
  readonly interactive = false;
  readonly stderr: NodeJS.WritableStream;

  constructor() {
    const self = this;
    this.stderr = {
      write(chunk: string | Uint8Array) {
        self.stderrText += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
        return true;
      },
    } as NodeJS.WritableStream;
  }

  out(text: string): void {
    this.stdout += text;
  }

  err(text: string): void {
    this.stderrText += text;
  }
}
