/** Where the simulated device's agent connects: an mqtt:// URL read into host, port and credentials. */
import { AgentHostError } from "./agent-host-error.ts";

export interface BrokerAddress {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

export function parseBroker(broker: string | BrokerAddress): BrokerAddress {
  if (typeof broker !== "string") return broker;
  let url: URL;
  try {
    url = new URL(broker);
  } catch {
    throw new AgentHostError(`Broker address ${broker} is not a URL; write it as mqtt://host:1883.`);
  }
  if (url.protocol !== "mqtt:") {
    throw new AgentHostError(
      `The simulated device speaks plain MQTT over TCP only; use an mqtt:// broker URL, not ${url.protocol}//.`,
    );
  }
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 1883,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
  };
}
