/** Why a simulated device could not bind its address, told so the user can fix it. */
import { SimulatorError } from "./simulator-error.ts";

export function describeBindError(error: unknown, address: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new SimulatorError(
      `UDP port ${port} on ${address} is already in use (another simulator, emulator or receiver?). Stop it, or start the fleet at another address (\`mpota simulate --first-address 127.0.2.1\`, for example).`,
      { cause: error },
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "EINVAL") {
    return new SimulatorError(
      `Address ${address} is not configured on this machine. Linux routes all of 127.0.0.0/8 to the loopback interface; on macOS add the alias first (\`sudo ifconfig lo0 alias ${address} up\`).`,
      { cause: error },
    );
  }
  if (code === "EACCES") {
    return new SimulatorError(`Not allowed to bind ${address}:${port}.`, { cause: error });
  }
  return error;
}
