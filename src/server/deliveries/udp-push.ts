import { DeviceSilentError, DeviceStoppedError } from "../../transfer/sender.ts";
import type { Delivery, DeliveryOutcome, DeliveryRequest } from "./delivery.ts";
import { type ImagePusher, PushAbortedError } from "./image-pusher.ts";
import { udpPushWords } from "./udp-push-words.ts";

export const UDP_PUSH = "udp-push";

/** Why a server without a signing key delivers nothing over UDP: at a request, and for a job that is due. */
export const NO_SIGNING_KEY = {
  request:
    "This server has no signing key, so it cannot push updates. Start it with --key FILE (the private key your devices' yaota8266 was built for; `mpota keys new` makes one).",
  job: "This server has no signing key, so it cannot push. Restart it with --key FILE.",
};

export function neverAnsweredMessage(deviceId: string, target: string, waitedMs: number): string {
  return `Device ${deviceId} took the command but did not answer in OTA mode at ${target} within ${Math.round(waitedMs / 1000)} s. Likely causes: its yaota8266 lacks the RTC-magic patch (then OTA mode needs the GPIO trigger), UDP port ${target.split(":").pop()} is blocked between this server and the device, or the image is signed with a key the bootloader was not built with (the receiver drops such datagrams silently; check with \`mpota inspect yaota8266.bin --key priv.key\`).`;
}

export function stalledMessage(target: string, error: string): string {
  return `The push to ${target} broke off: ${error.split("\n")[0]} The receiver keeps a stale buffer after a stall, so the server waits for it to reset and pushes the whole image again.`;
}

/**
 * The ESP8266 delivery: the server pushes the image to the device's
 * yaota8266 receiver in signed UDP datagrams (ImagePusher) at the address
 * the device acked from. Without a signing key it is `unavailable`.
 */
export class UdpPushDelivery implements Delivery {
  readonly name = UDP_PUSH;
  readonly words = udpPushWords;
  readonly unavailable: Delivery["unavailable"];

  constructor(
    private readonly pusher: ImagePusher | undefined,
    /** The receiver's listening window after an ack, for the words when a device never answers. */
    private readonly answerWindowMs: number,
  ) {
    this.unavailable = pusher ? undefined : NO_SIGNING_KEY;
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcome> {
    const { job, artifact } = request;
    if (!this.pusher) return { kind: "failed", reason: NO_SIGNING_KEY.job };
    const where = `${job.targetIp}:${job.targetPort}`;
    try {
      const r = await this.pusher.push({
        device: { address: job.targetIp as string, port: job.targetPort as number },
        imagePath: artifact.path,
        // The bytes just checked against the identity: signed once per firmware, shared by every device's push.
        image: { id: artifact.identity, bytes: artifact.bytes, sha256: artifact.sha256 },
        waitMs: request.waitMs,
        signal: request.signal,
        onProgress: request.onProgress,
      });
      const seconds = r.elapsedMs / 1000;
      return {
        kind: "delivered",
        progress: {
          bytes: r.ackedBytes,
          total: r.totalBytes,
          rate: seconds > 0 ? Math.round(r.ackedBytes / seconds) : 0,
          retransmits: r.retransmits,
        },
        elapsedMs: r.elapsedMs,
        summary: `Image sent to ${where}: ${r.totalBytes} bytes in ${seconds.toFixed(1)} s, ${r.retransmits} retransmits.`,
        details: { datagrams: r.datagramsSent },
      };
    } catch (error) {
      if (error instanceof PushAbortedError) return { kind: "aborted" };
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof DeviceStoppedError)
        return { kind: "stopped", reason: stalledMessage(where, message) };
      if (error instanceof DeviceSilentError) {
        return {
          kind: "silent",
          neverAnswered: neverAnsweredMessage(job.deviceId, where, this.answerWindowMs),
        };
      }
      return { kind: "failed", reason: `The push to ${where} failed: ${message}` };
    }
  }
}
