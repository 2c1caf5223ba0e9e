// What the embedded broker's TLS listener is to serve, from `mpota serve`'s options, checked.
import { UsageError } from "../errors.ts";
import { DEFAULT_MQTTS_PORT } from "../server/mqtt/broker-tls-listener.ts";
import type { ServeOptions } from "./serve-options.ts";

/** What the embedded broker's TLS listener is to serve, as the options ask. */
export interface BrokerTlsRequest {
  source: { kind: "files"; certFile: string; keyFile: string } | { kind: "self-signed" };
  host: string;
  port: number;
}

export function brokerTlsRequest(options: ServeOptions): BrokerTlsRequest | undefined {
  const files = options.mqttTlsCert !== undefined || options.mqttTlsKey !== undefined;
  const anyTls = files || options.mqttTlsSelfSigned === true;
  if (
    options.mqtt !== undefined &&
    (anyTls || options.mqttsHost !== undefined || options.mqttsPort !== undefined)
  ) {
    throw new UsageError(
      "--mqtt-tls-cert, --mqtt-tls-key, --mqtt-tls-self-signed, --mqtts-host and --mqtts-port set up TLS on the embedded broker; with --mqtt URL the server uses that broker instead (set TLS up there, and connect to it with mqtts:// and --mqtt-ca).",
    );
  }
  if (files && options.mqttTlsSelfSigned) {
    throw new UsageError(
      "Give either --mqtt-tls-cert and --mqtt-tls-key (your own certificate) or --mqtt-tls-self-signed (one mpota makes), not both.",
    );
  }
  if (files && (options.mqttTlsCert === undefined || options.mqttTlsKey === undefined)) {
    throw new UsageError("--mqtt-tls-cert and --mqtt-tls-key go together: give both, or neither.");
  }
  if (!anyTls) {
    if (options.mqttsHost !== undefined || options.mqttsPort !== undefined) {
      throw new UsageError(
        "--mqtts-host and --mqtts-port set up the embedded broker's TLS listener: turn it on with --mqtt-tls-cert FILE --mqtt-tls-key FILE, or --mqtt-tls-self-signed.",
      );
    }
    return undefined;
  }
  if (options.mqttsPort !== undefined && (options.mqttsPort < 0 || options.mqttsPort > 65535)) {
    throw new UsageError("--mqtts-port must be between 0 and 65535.");
  }
  return {
    source:
      options.mqttTlsCert !== undefined && options.mqttTlsKey !== undefined
        ? { kind: "files", certFile: options.mqttTlsCert, keyFile: options.mqttTlsKey }
        : { kind: "self-signed" },
    host: options.mqttsHost ?? "0.0.0.0",
    port: options.mqttsPort ?? DEFAULT_MQTTS_PORT,
  };
}
