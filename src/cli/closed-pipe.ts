import { EXIT_CODES } from "../exit-codes.ts";
/** What a shell reports for a process that SIGPIPE ended (128 + 13), as `yes | head -1` does. */
export const CLOSED_PIPE_EXIT = EXIT_CODES.closedPipe.code;

let installed = false;

/**
 * When the reader of stdout or stderr goes away (`mpota devices | head -1`),
 * the next write fails with EPIPE. Nothing more can be said to anyone, so
 * the process ends quietly with the status a shell gives a SIGPIPE death,
 * instead of an unhandled 'error' event and a stack trace.
 */
export function exitQuietlyOnClosedPipe(
  streams: NodeJS.WriteStream[] = [process.stdout, process.stderr],
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  if (installed) return;
  installed = true;
  for (const stream of streams) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") exit(CLOSED_PIPE_EXIT);
      else throw error;
    });
  }
}
