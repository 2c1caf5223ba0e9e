import type { KeyObject } from "node:crypto";
import { createHash, type Hash } from "node:crypto";
import { type SignedPullCommand, verifyCommand } from "../../../src/protocol/command-signature.ts";
import { MqttDevice } from "./mqtt-device.ts";

/** The app slot of MicroPython's ESP32 OTA variant: 0x180000 bytes. */
export const OTA_SLOT = 0x180000;

export interface FetchResult {
  status: number;
  contentRange: string | null;
  /** Bytes the device holds after this fetch (all of them once the fetch completed). */
  got: number;
}

/**
 * An ESP32 as the server sees it, played by the test per contract v3: a
 * plain MQTT client publishing v3 states and acks, and an HTTP client
 * fetching the image its signed pull command names, with its MQTT
 * credentials (Basic) and `Range: bytes=<got>-` when it resumes. It writes
 * the bytes into a "slot" and hashes them as they come, as the agent does;
 * the test drives each step, so nothing waits on a timer.
 */
export class Esp32Device {
  /** The other slot: the bytes written so far. */
  slot = Buffer.alloc(0);
  private hash: Hash = createHash("sha256");
  fetches: FetchResult[] = [];

  private constructor(
    readonly mqtt: MqttDevice,
    readonly id: string,
    readonly login: { username: string; password: string },
    public fw: string,
    private readonly trusted: KeyObject,
  ) {}

  static async connect(
    url: string,
    id: string,
    login: { username: string; password: string },
    fw: string,
    commandKey: KeyObject,
  ): Promise<Esp32Device> {
    const device = new Esp32Device(await MqttDevice.connect(url, id), id, login, fw, commandKey);
    return device;
  }

  /** Connects again (a new broker after a server restart), keeping what the slot holds. */
  async reconnect(url: string): Promise<void> {
    await this.mqtt.close().catch(() => undefined);
    (this as { mqtt: MqttDevice }).mqtt = await MqttDevice.connect(url, this.id);
  }

  state(extra: Record<string, unknown> = {}): Promise<void> {
    return this.mqtt.publish(
      "state",
      JSON.stringify({
        v: 3,
        fw: this.fw,
        ip: "127.0.0.1",
        seq: 0,
        chip: "esp32",
        slot: OTA_SLOT,
        run: "ota_0",
        ...extra,
      }),
    );
  }

  /** The next signed pull command, checked as the agent checks it (signature by the trusted key). */
  async pullCommand(): Promise<SignedPullCommand> {
    const command = await this.mqtt.command((c) => c !== "" && (c as { op: string }).op === "pull");
    verifyCommand(command, this.trusted);
    return command as unknown as SignedPullCommand;
  }

  report(report: Record<string, unknown>): Promise<void> {
    return this.mqtt.ack(report);
  }

  /**
   * Fetches `command.url` from where the slot ends (`Range` when resuming),
   * reporting progress every `reportEvery` bytes; stops after `stopAfter`
   * bytes of this fetch when given (the connection breaks off), else reads
   * to the end. Returns the HTTP answer.
   */
  async fetch(
    command: SignedPullCommand,
    options: { stopAfter?: number; reportEvery?: number } = {},
  ): Promise<FetchResult> {
    const reportEvery = options.reportEvery ?? 64 * 1024;
    const headers: Record<string, string> = {
      authorization: `Basic ${Buffer.from(`${this.login.username}:${this.login.password}`).toString("base64")}`,
    };
    if (this.slot.length > 0) headers.range = `bytes=${this.slot.length}-`;
    const abort = new AbortController();
    const response = await fetch(command.url, { headers, signal: abort.signal });
    const result: FetchResult = {
      status: response.status,
      contentRange: response.headers.get("content-range"),
      got: this.slot.length,
    };
    this.fetches.push(result);
    if (response.status !== 200 && response.status !== 206) {
      await response.body?.cancel();
      return result;
    }
    let thisFetch = 0;
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const limit = options.stopAfter ?? Number.POSITIVE_INFINITY;
    while (thisFetch < limit) {
      const { value, done } = await reader.read();
      if (done) break;
      let chunk = Buffer.from(value).subarray(0, limit - thisFetch);
      // Written in pieces that end at each report boundary, so reports come at exact multiples.
      while (chunk.length > 0) {
        const toBoundary = reportEvery - (this.slot.length % reportEvery);
        const piece = chunk.subarray(0, toBoundary);
        chunk = chunk.subarray(piece.length);
        this.slot = Buffer.concat([this.slot, piece]);
        this.hash.update(piece);
        thisFetch += piece.length;
        result.got = this.slot.length;
        if (this.slot.length % reportEvery === 0 && this.slot.length < command.size)
          await this.report({ job: command.job, got: this.slot.length, total: command.size });
      }
    }
    if (thisFetch >= limit) {
      abort.abort();
      await reader.cancel().catch(() => undefined);
    }
    return result;
  }

  /** Like the agent at the end of a fetch: digest against `sha`, then done (or the mismatch error). */
  async finish(command: SignedPullCommand): Promise<boolean> {
    const digest = this.hash.copy().digest("hex");
    if (this.slot.length !== command.size || digest !== command.sha) {
      await this.report({
        job: command.job,
        error: "sha256 mismatch: the image was corrupted on the way; nothing was switched",
      });
      return false;
    }
    await this.report({ job: command.job, got: command.size, total: command.size, done: true });
    return true;
  }

  /** Forgets the slot's contents (a new image). */
  clearSlot(): void {
    this.slot = Buffer.alloc(0);
    this.hash = createHash("sha256");
  }

  async close(): Promise<void> {
    await this.mqtt.close().catch(() => undefined);
  }
}
