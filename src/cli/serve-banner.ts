import { type Interfaces, listenUrls, listenView } from "../net/listen-addresses.ts";
import type { BrokerTlsMaterial } from "../server/mqtt/broker-tls.ts";
import type { MpotaServer } from "../server/server.ts";

/** The certificate the TLS listener serves, as `mpota serve` loaded or made it. */
export type ServedCertificate = BrokerTlsMaterial & { created?: boolean };

/**
 * The lines `mpota serve` prints about its listeners: where each really
 * listens (a wildcard bind as the machine's addresses), the URLs to use, the
 * TLS certificate's fingerprint, and a note where a default was left.
 */
export function listenerLines(
  server: MpotaServer,
  certificate: ServedCertificate | undefined,
  interfaces?: Interfaces,
): string {
  const lines: string[] = [];
  const notes: string[] = [];
  if (server.http) {
    const view = listenView(server.http.address, interfaces);
    const urls = listenUrls("http", view.hosts, server.http.address.port, "/");
    lines.push(
      `Dashboard: ${urls.join(" ")} (listens on ${view.where}${view.loopbackOnly ? "; --http-host 0.0.0.0 opens it to the network" : ""})${server.http.tokenPath ? "" : " (no login: --no-auth)"}`,
    );
    const deviceUrl = server.deviceUrl;
    if (deviceUrl !== undefined)
      lines.push(
        `Devices fetch ESP32 firmware at ${deviceUrl}/device/firmware/<fw> and apps below ${deviceUrl}/device/app/<sha>/${view.loopbackOnly ? " (this machine only: --http-host 0.0.0.0, and --device-url when devices reach it under another address)" : " (--device-url changes it)"}`,
      );
    if (!view.loopbackOnly) {
      notes.push(
        "The dashboard is open to the network over plain HTTP: the admin token you log in with and the session cookie cross it unencrypted, and whoever reads that traffic can push firmware to every device. Use it only on a network you trust, or keep the default (127.0.0.1) and reach it through an SSH tunnel or an HTTPS proxy (docs/security-tls.md).",
      );
    }
  }
  const broker = server.embeddedBroker;
  if (broker) {
    const plain = listenView(broker.address, interfaces);
    lines.push(
      `MQTT broker: ${listenUrls("mqtt", plain.hosts, broker.port).join(" ")} (listens on ${plain.where})`,
    );
    const tls = broker.tls;
    if (tls) {
      const view = listenView(tls.address, interfaces);
      lines.push(
        `MQTT broker with TLS: ${listenUrls("mqtts", view.hosts, tls.port).join(" ")} (listens on ${view.where})`,
      );
      if (certificate) {
        lines.push(
          `  certificate ${certificate.certFile}${certificate.selfSigned ? ` (self-signed${certificate.created ? ", made now" : ""})` : ""}, SHA-256 fingerprint ${certificate.fingerprint}`,
        );
        if (certificate.selfSigned) {
          lines.push(
            `  clients trust it with --mqtt-ca ${certificate.certFile} (mosquitto_sub --cafile, an ESP32's cadata)`,
          );
        }
        notes.push(...certificate.notes);
      }
      if (view.loopbackOnly)
        notes.push(
          "The MQTT broker's TLS listener listens on this machine only: devices on the network cannot reach it (--mqtts-host 0.0.0.0 opens it).",
        );
    } else if (plain.loopbackOnly) {
      notes.push(
        "The MQTT broker listens on this machine only: devices on the network cannot reach it (--mqtt-host 0.0.0.0 opens it).",
      );
    }
  }
  return [...lines, ...notes.map((note) => `Note: ${note}`)].map((line) => `${line}\n`).join("");
}
