import type { Logger } from "pino";
import type { BridgeStateMessage } from "../api/api.ts";
import type { Topics } from "../api/topics.ts";
import type { Feature } from "../base/features.ts";
import type { MqttLink } from "../mqtt/mqtt-link.ts";
import { readBridgeState } from "../mqtt/topic-readers.ts";

const ONLINE: BridgeStateMessage = { state: "online" };
const OFFLINE: BridgeStateMessage = { state: "offline" };

export interface PresenceOptions {
  link: MqttLink;
  topics: Topics;
  logger: Logger;
  /** Several instances share the bridge (MQTT 5 shared subscriptions). */
  shared: boolean;
  /** What to publish again after a lost connection (retained messages a broker may have lost). */
  republish: Array<() => Promise<void>>;
}

/**
 * The server's retained bridge state: "online" once every other feature
 * runs, "offline" first thing at stop (and by the last will when the
 * connection drops). After a lost connection it says "online" again and
 * has the features publish their retained messages again.
 */
export class Presence implements Feature {
  readonly name = "presence";
  private stopped = false;

  constructor(private readonly o: PresenceOptions) {}

  async start(): Promise<void> {
    const { link, topics, logger } = this.o;
    await link.publishJson(topics.bridgeState, ONLINE, { retain: true });
    if (this.o.shared) {
      // Several instances share the bridge: when one of them goes (its last will
      // says "offline"), the others that are still here say "online" again.
      await link.subscribe(topics.bridgeState, readBridgeState, ({ payload }) => {
        if (this.stopped || payload.state === ONLINE.state) return;
        link.publishJson(topics.bridgeState, ONLINE, { retain: true }).catch(() => undefined);
      });
    }
    // After a lost connection the broker has published our last will (offline), and may have lost retained messages.
    link.client.on("connect", () => {
      if (this.stopped) return;
      logger.info("MQTT connection back");
      link.publishJson(topics.bridgeState, ONLINE, { retain: true }).catch(() => undefined);
      for (const republish of this.o.republish) {
        republish().catch((error: unknown) =>
          logger.warn({ err: (error as Error).message }, "republish failed"),
        );
      }
    });
  }

  /** Says "offline" (waiting at most a second: the broker may be gone). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.race([
      this.o.link.publishJson(this.o.topics.bridgeState, OFFLINE, { retain: true }),
      new Promise((resolve) => setTimeout(resolve, 1000).unref()),
    ]).catch(() => undefined);
  }
}

/** The last will the server's connection carries: "offline", retained. */
export function offlineWill(topics: Topics) {
  return { topic: topics.bridgeState, payload: JSON.stringify(OFFLINE), retain: true, qos: 1 as const };
}
