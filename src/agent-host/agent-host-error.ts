/** The error the simulated device's host raises (exit code agentHost). */
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/** The simulated device cannot do what was asked (wrong phase, worker failure, nothing happened in time). */
export class AgentHostError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.agentHost.code;
}
