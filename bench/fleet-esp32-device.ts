import { createHash, type KeyObject } from "node:crypto";
import { connectAsync, type MqttClient } from "mqtt";
import { type SignedPullCommand, verifyCommand } from "../src/protocol/command-signature.ts";

/** The app slot of MicroPython's ESP32 OTA variant. */
const OTA_SLOT = 0x180000;
/** Bytes between the agent's progress reports (its PULL_REPORT default). */
const REPORT_EVERY = 64 * 1024;

export interface BenchEsp32Options {
  id: string;
  url: string;
  /** The device's own secret (its id is the user name). */
  password: string;
  /** The server's command key: pull commands are checked against it, as the agent checks them. */
  commandKey: KeyObject;
  /** Identities (first 32 hex digits of the ELF SHA-256) of the image it runs first. */
  fw: string;
  /** How long the board takes from `machine.reset()` to its next state (ms). */
  bootMs: number;
  /** Called with the identity of every firmware the board boots after a pull. */
  onBoot?: (fw: string) => void;
}

/**
 * One ESP32 of the fleet benchmark, per contract v3, scripted in TypeScript so
 * that hundreds fit in one process: it logs in as itself, reports a v3 state,
 * takes a signed pull command (checked against the server's command key),
 * acks it, fetches the image over HTTP with its MQTT credentials, hashes it
 * as it comes, reports progress every 64 KiB and the end, then "boots" the new
 * slot and reports the new firmware. It keeps no image in memory (the real
 * board writes it to flash). The real agent under MicroPython does the same
 * (test/agent, bench/esp32-pull-bench.ts); this one skips the flash timing.
 */
export class BenchEsp32Device {
  private client: MqttClient | undefined;
  private closed = false;
  private fw: string;
  private run = "ota_0";
  private busy = false;
  bytesFetched = 0;

  constructor(private readonly o: BenchEsp32Options) {
    this.fw = o.fw;
  }

  private get base(): string {
    return `mpota/${this.o.id}`;
  }

  async start(): Promise<void> {
    if (this.closed) return;
    const { id, url, password } = this.o;
    const client = await connectAsync(url, {
      clientId: id,
      username: id,
      password,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      will: { topic: `${this.base}/status`, payload: Buffer.from("offline"), retain: true, qos: 1 },
    });
    this.client = client;
    client.on("message", (topic, payload) => {
      if (topic !== `${this.base}/cmd` || payload.length === 0 || this.busy) return;
      this.busy = true;
      this.pull(client, payload.toString()).then(
        () => {
          this.busy = false;
        },
        (error: unknown) => {
          this.busy = false;
          if (!this.closed) console.error(`${id}: ${(error as Error).message}`);
        },
      );
    });
    await client.subscribeAsync(`${this.base}/cmd`, { qos: 1 });
    const state = {
      v: 3,
      fw: this.fw,
      ip: "127.0.0.1",
      seq: 0,
      chip: "esp32",
      slot: OTA_SLOT,
      run: this.run,
    };
    await client.publishAsync(`${this.base}/state`, JSON.stringify(state), { qos: 1, retain: true });
    await client.publishAsync(`${this.base}/status`, "online", { qos: 1, retain: true });
  }

  private async pull(client: MqttClient, text: string): Promise<void> {
    const raw = JSON.parse(text) as { op?: string; fw?: string };
    if (raw.op !== "pull" || raw.fw === this.fw) return;
    verifyCommand(raw, this.o.commandKey);
    const command = raw as unknown as SignedPullCommand;
    const report = (body: Record<string, unknown>) =>
      client.publishAsync(`${this.base}/ack`, JSON.stringify({ job: command.job, ...body }), { qos: 1 });
    await report({ ready: true, pull: true });
    const auth = Buffer.from(`${this.o.id}:${this.o.password}`).toString("base64");
    const response = await fetch(command.url, { headers: { authorization: `Basic ${auth}` } });
    if (response.status !== 200 || !response.body) {
      await response.body?.cancel();
      await report({ error: `HTTP ${response.status} from the release's address` });
      return;
    }
    const hash = createHash("sha256");
    let got = 0;
    let nextReport = REPORT_EVERY;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      got += chunk.length;
      this.bytesFetched += chunk.length;
      while (got >= nextReport && nextReport < command.size) {
        await report({ got: nextReport, total: command.size });
        nextReport += REPORT_EVERY;
      }
    }
    if (got !== command.size || hash.digest("hex") !== command.sha) {
      await report({ error: "sha256 mismatch: the image was corrupted on the way; nothing was switched" });
      return;
    }
    await report({ got, total: command.size, done: true });
    // machine.reset(): the session ends (the last will is not sent on a clean end), the new slot boots.
    await client.endAsync();
    this.client = undefined;
    await new Promise((resolve) => setTimeout(resolve, this.o.bootMs));
    this.fw = command.fw;
    this.run = this.run === "ota_0" ? "ota_1" : "ota_0";
    this.o.onBoot?.(this.fw);
    await this.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.endAsync().catch(() => undefined);
  }
}
