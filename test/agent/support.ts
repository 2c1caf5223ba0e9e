import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { after, afterEach, before } from "node:test";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { commandKeyId, publicModulusHex } from "../../src/protocol/command-key-facts.ts";
import { encodeCommand, type OtaCommandFields, signCommand } from "../../src/protocol/command-signature.ts";

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

export interface Login {
  clientId: string;
  username?: string;
  password?: string;
}

/**
 * A file's (or suite's) broker, started before its tests and closed after them, and its cleanups:
 * what a test pushes onto `cleanups` (boards, servers) is undone after that test, last first.
 */
export function brokerHooks(): { readonly broker: TestBroker; cleanups: Array<() => Promise<void> | void> } {
  let started: TestBroker | undefined;
  const cleanups: Array<() => Promise<void> | void> = [];
  before(async () => {
    started = await TestBroker.start();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  after(async () => {
    await started?.close();
  });
  return {
    get broker(): TestBroker {
      if (!started) throw new Error("brokerHooks: the broker starts in a before hook; use it inside tests");
      return started;
    },
    cleanups,
  };
}

/** A real broker (Aedes) on a loopback port chosen by the OS, plus a subscriber that records everything. */
export class TestBroker {
  readonly received: Received[] = [];

  private constructor(
    /** Every CONNECT's client id, user name and password, in order (the broker lets everyone in). */
    readonly logins: Login[],
    private readonly aedes: Aedes,
    private readonly server: Server,
    readonly url: string,
    private readonly watcher: MqttClient,
  ) {
    watcher.on("message", (topic, payload, packet) => {
      this.received.push({ topic, payload: payload.toString(), retain: packet.retain });
    });
  }

  static async start(): Promise<TestBroker> {
    const logins: Login[] = [];
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        logins.push({
          clientId: client.id,
          ...(username !== undefined ? { username } : {}),
          ...(password !== undefined ? { password: password.toString() } : {}),
        });
        done(null, true);
      },
    });
    const server = createServer(aedes.handle);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const watcher = await mqtt.connectAsync(url, { clientId: "test-watcher" });
    await watcher.subscribeAsync("mpota/#", { qos: 1 });
    return new TestBroker(logins, aedes, server, url, watcher);
  }

  /** What the watcher saw on `topic`, in order. */
  on(topic: string): string[] {
    return this.received.filter((m) => m.topic === topic).map((m) => m.payload);
  }

  /** Resolves when the watcher has seen `payload` (any, if undefined) on `topic`. */
  async seen(topic: string, payload?: string, timeoutMs = 10_000): Promise<string> {
    const match = (m: Received) => m.topic === topic && (payload === undefined || m.payload === payload);
    const found = this.received.find(match);
    if (found) return found.payload;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.watcher.off("message", listener);
        reject(new Error(`no ${payload ?? "message"} on ${topic} within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (t: string, p: Buffer) => {
        if (!match({ topic: t, payload: p.toString(), retain: false })) return;
        clearTimeout(timer);
        this.watcher.off("message", listener);
        resolve(p.toString());
      };
      this.watcher.on("message", listener);
    });
  }

  /** Resolves once the watcher has seen `count` messages on `topic`. */
  async seenCount(topic: string, count: number, timeoutMs = 10_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.on(topic).length < count) {
      if (Date.now() > deadline)
        throw new Error(`only ${this.on(topic).length} of ${count} messages on ${topic}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.on(topic);
  }

  /** The retained message on `topic`, as a new subscriber gets it. */
  async retained(topic: string): Promise<string> {
    const client = await mqtt.connectAsync(this.url);
    try {
      const got = new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no retained message on ${topic}`)), 5000);
        client.on("message", (t, p, packet) => {
          if (t === topic && packet.retain) {
            clearTimeout(timer);
            resolve(p.toString());
          }
        });
      });
      await client.subscribeAsync(topic, { qos: 1 });
      return await got;
    } finally {
      await client.endAsync();
    }
  }

  /** Publishes as the update server would (QoS 1). */
  async publish(topic: string, payload: string, retain: boolean): Promise<void> {
    const client = await mqtt.connectAsync(this.url);
    await client.publishAsync(topic, payload, { qos: 1, retain });
    await client.endAsync();
  }

  async close(): Promise<void> {
    await this.watcher.endAsync(true);
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    this.server.close();
  }
}

/**
 * Signs commands as the mpota server does (contract v2), with a key made
 * for the test. `seq` counts up from 1 unless given.
 */
export class CommandSigner {
  readonly privateKey: KeyObject;
  readonly modulusHex: string;
  readonly kid: string;
  private nextSeq = 1;

  constructor(bits = 2048) {
    this.privateKey = generateKeyPairSync("rsa", { modulusLength: bits }).privateKey;
    this.modulusHex = publicModulusHex(this.privateKey);
    this.kid = commandKeyId(this.modulusHex);
  }

  /** A signed ota command (ver 1.0.0, down 0 unless given), as the JSON payload. */
  ota(fields: Partial<OtaCommandFields> & { dev: string; job: string; fw: string }): string {
    const seq = fields.seq ?? this.nextSeq++;
    return encodeCommand(
      signCommand({ op: "ota", size: 600_000, ver: "1.0.0", down: 0, ...fields, seq }, this.privateKey),
    );
  }

  /** A signed keys command naming these moduli. */
  keys(dev: string, keys: string[], seq = this.nextSeq++): string {
    return encodeCommand(signCommand({ op: "keys", dev, seq, keys }, this.privateKey));
  }
}

/**
 * A TCP relay in front of a broker that can go mute: while `mute`, it takes
 * each connection and never answers (a hung broker, or one whose host is gone
 * with the connection half open); otherwise it pipes to the broker, or with
 * `answerBytes` set passes only that many of the broker's bytes on a new
 * connection and then nothing (a broker that hangs mid-session). `silence()`
 * makes the connections open at that moment go quiet both ways.
 */
export class MuteRelay {
  mute = false;
  answerBytes: number | undefined;
  /** Connections taken while mute. */
  muted = 0;
  private readonly held = new Set<Socket>();
  private readonly silencers = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(brokerUrl: string): Promise<MuteRelay> {
    const port = Number(new URL(brokerUrl).port);
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const relay = new MuteRelay(server, `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on("connection", (client) => relay.take(client, port));
    return relay;
  }

  private take(client: Socket, port: number): void {
    this.held.add(client);
    client.on("close", () => this.held.delete(client));
    client.on("error", () => undefined);
    if (this.mute) {
      this.muted++;
      client.resume(); // read and drop what the device sends
      return;
    }
    let left = this.answerBytes ?? Number.POSITIVE_INFINITY;
    let quiet = false;
    const silence = () => {
      quiet = true;
      left = 0;
    };
    this.silencers.add(silence);
    const up = connect(port, "127.0.0.1");
    // Once mute, the broker closing its side (its keep-alive ran out) does not reach the device.
    up.on("close", () => {
      if (left > 0) client.destroy();
    });
    up.on("error", () => undefined);
    client.on("close", () => {
      this.silencers.delete(silence);
      up.destroy();
    });
    client.on("data", (chunk: Buffer) => {
      if (!quiet) up.write(chunk);
    });
    up.on("data", (chunk: Buffer) => {
      if (left > 0) client.write(chunk.subarray(0, left));
      left -= chunk.length;
    });
  }

  /**
   * The connections open now go quiet both ways, as a broker process that
   * stopped while its host's kernel still takes the bytes, or a NAT that
   * dropped the flow: what the device sends is taken and dropped, nothing
   * answers, and nothing is closed. New connections pass as before.
   */
  silence(): void {
    for (const s of this.silencers) s();
  }

  /** How many connections are open now (a device that gave up has closed its one). */
  get open(): number {
    return this.held.size;
  }

  async close(): Promise<void> {
    for (const s of this.held) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
