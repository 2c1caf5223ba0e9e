import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import type { DeviceState, OtaCommand } from "../../../src/protocol/mqtt-contract.ts";
import { deviceLogin } from "./device-logins.ts";

/** `url` without the user name and password it may carry. */
function withoutCredentials(url: string): string {
  const u = new URL(url);
  if (u.username === "" && u.password === "") return url;
  u.username = "";
  u.password = "";
  return u.toString().replace(/\/$/, "");
}

/**
 * A device as the server sees it over MQTT: an MQTT.js client publishing
 * state, status and acks on the contract's topics and collecting commands.
 */
export class MqttDevice {
  /** Commands received, in order ("" for a cleared command). */
  readonly commands: Array<OtaCommand | ""> = [];
  private readonly waiters: Array<{
    predicate: (c: OtaCommand | "") => boolean;
    resolve: (c: OtaCommand | "") => void;
  }> = [];

  private constructor(
    readonly client: MqttClient,
    readonly id: string,
    readonly base: string,
  ) {
    client.on("message", (topic, payload) => {
      if (topic !== `${base}/${id}/cmd`) return;
      const command = payload.length === 0 ? "" : (JSON.parse(payload.toString()) as OtaCommand);
      this.commands.push(command);
      for (const w of this.waiters.splice(0)) {
        if (w.predicate(command)) w.resolve(command);
        else this.waiters.push(w);
      }
    });
  }

  /**
   * Connects like the agent: clean session, last will `offline`, subscribed
   * to its cmd topic. Its login: `options.username`/`password` when given
   * (with its id as client id when it logs in as itself, as a provisioned
   * device must), else its credential on a test server's embedded broker.
   */
  static async connect(
    url: string,
    id: string,
    base = "mpota",
    options: IClientOptions = {},
  ): Promise<MqttDevice> {
    // On a test server's embedded broker the device logs in with its own credential and its id as client id.
    const provisioned = await deviceLogin(url, id);
    const login = options.username === undefined ? provisioned : undefined;
    // A login of its own replaces any in the URL (MQTT.js lets the URL's win over the options).
    const ownLogin = login !== undefined || options.username !== undefined;
    const client = await connectAsync(ownLogin ? withoutCredentials(url) : url, {
      ...options,
      ...(login ? { username: login.username, password: login.password } : {}),
      clientId:
        options.clientId ??
        (login || options.username === id ? id : `dev-${id}-${Math.random().toString(16).slice(2, 8)}`),
      clean: true,
      reconnectPeriod: options.reconnectPeriod ?? 0,
      will: { topic: `${base}/${id}/status`, payload: Buffer.from("offline"), retain: true, qos: 1 },
    });
    const device = new MqttDevice(client, id, base);
    await client.subscribeAsync(`${base}/${id}/cmd`, { qos: 1 });
    return device;
  }

  async publish(
    kind: string,
    payload: string | Buffer,
    retain = kind === "state" || kind === "status",
  ): Promise<void> {
    await this.client.publishAsync(`${this.base}/${this.id}/${kind}`, payload, { qos: 1, retain });
  }

  state(state: Partial<DeviceState> & { fw: string; ip: string }): Promise<void> {
    return this.publish("state", JSON.stringify({ v: 2, ...state }));
  }

  status(status: string): Promise<void> {
    return this.publish("status", status);
  }

  ack(ack: Record<string, unknown>): Promise<void> {
    return this.publish("ack", JSON.stringify(ack), false);
  }

  /** Resolves with the next command (or the one already received) that matches. */
  command(
    predicate: (c: OtaCommand | "") => boolean = (c) => c !== "",
    timeoutMs = 10_000,
  ): Promise<OtaCommand | ""> {
    const seen = this.commands.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`device ${this.id}: no matching command within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        predicate,
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
      });
    });
  }

  /** Disconnects cleanly (no last will). */
  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
