/** The simulator's error (exit code simulator). */
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/** A simulated device cannot take its loopback address, or was used in a way its state does not allow. */
export class SimulatorError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.simulator.code;
}
