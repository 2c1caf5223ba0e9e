import { MpotaError } from "../../errors.ts";
import { EXIT_CODES } from "../../exit-codes.ts";

/** The embedded broker cannot listen where it was asked to. */
export class BrokerListenError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.brokerListen.code;
}

/** The embedded broker cannot listen with TLS as asked (bad certificate or key, no openssl, port taken). */
export class BrokerTlsError extends BrokerListenError {}
