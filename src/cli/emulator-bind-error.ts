// The emulator's bind failures, told as what to do.
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/** The emulator could not take its UDP address. */
export class EmulatorBindError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.emulatorBind.code;
}

export function describeBindError(error: unknown, address: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new EmulatorBindError(
      `UDP port ${port} on ${address} is already in use (another emulator or a real receiver?). Stop it, or pick another with --port or --bind.`,
      { cause: error },
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "EINVAL") {
    return new EmulatorBindError(
      `Address ${address} is not configured on this machine. Use --bind 127.0.0.1, or add the alias (macOS: \`sudo ifconfig lo0 alias ${address} up\`).`,
      { cause: error },
    );
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new EmulatorBindError(
      `--bind ${address} does not resolve to an address: give one of this machine's addresses, such as 127.0.0.2 (the default) or its LAN address.`,
      { cause: error },
    );
  }
  if (code === "EACCES") {
    return new EmulatorBindError(`Not allowed to bind ${address}:${port}. Use a port above 1023.`, {
      cause: error,
    });
  }
  return error;
}
