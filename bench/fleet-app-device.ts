import { createHash, type KeyObject } from "node:crypto";
import { request } from "node:http";
import { connectAsync, type MqttClient } from "mqtt";
import type { AppFileEntry } from "../src/apps/app-manifest.ts";
import { verifyAppManifest } from "../src/apps/app-signature.ts";
import { commandKeyId, publicModulus } from "../src/protocol/command-key-facts.ts";
import { type SignedAppCommand, verifyCommand } from "../src/protocol/command-signature.ts";

/** A progress report at least every 64 KiB staged (mpota_appjob.EVERY). */
const REPORT_EVERY = 64 * 1024;
/** `sys.implementation._mpy` of a Pico W: .mpy 6, armv6m (docs/app-updates.md, "Boards"). */
const RP2_MPY = 0x1306;

export interface BenchAppOptions {
  id: string;
  url: string;
  /** The device's own secret (its id is the user name), for MQTT and HTTP Basic alike. */
  password: string;
  /** The server's command key: `app` commands are checked against it, as mpota_cmd checks them. */
  commandKey: KeyObject;
  /** The app key it trusts (its APP_KEYS): a manifest must be signed by it. */
  appKey: KeyObject;
  /** The release it runs first: name, version, identity (its manifest's SHA-256) and file digests. */
  app: { name: string; version: string; id: string; files: readonly AppFileEntry[] };
  /** Bytes free for a new app (`os.statvfs` plus the other slot), as the state's `app.free` says. */
  free: number;
  /** The MicroPython build it runs (the state's `fw`: rp2 boards report their build, mpota_rp2.ident). */
  fw: string;
  /** How long the board takes from `machine.reset()` to its next state (ms). */
  bootMs: number;
  /** Called with the identity of every app the board boots after an update. */
  onBoot?: (appId: string) => void;
}

/**
 * One Raspberry Pi Pico W of the fleet benchmark, taking app updates per
 * contract v3 (op `app`), scripted in TypeScript so that hundreds fit in one
 * process. It does what the real agent does (device/mpota_agent.py,
 * mpota_appget.py, mpota_appjob.py): logs in as itself, reports a v3 state
 * with its `app`, takes the signed `app` command (checked against the
 * server's command key; one whose sha is the running app is ignored), acks
 * `ready` with `pull`, fetches `<url>/manifest` (its SHA-256 must be the
 * command's, its signature the trusted app key's), then, in manifest order,
 * only the files whose digest its running app does not have (one HTTP
 * request on a new connection each, as mpota_http does), each checked by
 * its size and SHA-256; it reports `got`/`total`/`files`/`of` as
 * mpota_appjob does and `done` at the switch, then "boots" and reports the
 * new app. It keeps digests only, no file bytes (the real board writes them
 * to flash and copies the unchanged ones from its running slot).
 *
 * A command whose signature fails, a manifest that does not verify, or a
 * file whose digest differs is recorded in {@link failure}: the bench
 * throws on it, so no figure comes from a broken run.
 */
export class BenchAppDevice {
  private client: MqttClient | undefined;
  private closed = false;
  private busy = false;
  private seq = 0;
  private app: BenchAppOptions["app"];
  /** The first verification that failed (command signature, manifest, a file's digest), if any. */
  failure: string | undefined;
  httpRequests = 0;
  filesFetched = 0;
  bytesFetched = 0;

  constructor(private readonly o: BenchAppOptions) {
    this.app = o.app;
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
      this.command(client, payload.toString()).then(
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
    // mpota_agent._state on an rp2 board with the app loader: v 3, its app, chip from sys.platform.
    const state = {
      v: 3,
      fw: this.o.fw,
      ip: "127.0.0.1",
      wake: "other",
      sleep: 0,
      seq: this.seq,
      keys: [commandKeyId(publicModulus(this.o.commandKey))],
      mem: 150_000,
      app: {
        name: this.app.name,
        ver: this.app.version,
        id: this.app.id,
        board: "rp2",
        mpy: RP2_MPY,
        free: this.o.free,
      },
      chip: "rp2",
    };
    await client.publishAsync(`${this.base}/state`, JSON.stringify(state), { qos: 1, retain: true });
    await client.publishAsync(`${this.base}/status`, "online", { qos: 1, retain: true });
  }

  private fail(what: string): never {
    this.failure ??= `${this.o.id}: ${what}`;
    throw new Error(what);
  }

  private async command(client: MqttClient, text: string): Promise<void> {
    const raw = JSON.parse(text) as { op?: string };
    if (raw.op !== "app") return;
    try {
      verifyCommand(raw, this.o.commandKey);
    } catch (error) {
      this.fail(`the app command does not verify with the server's command key: ${(error as Error).message}`);
    }
    const command = raw as unknown as SignedAppCommand;
    if (command.dev !== this.o.id) this.fail(`an app command for device ${command.dev} came on its topic`);
    // The agent ignores a command for the app it runs (the retained command after its own update).
    if (command.sha === this.app.id) {
      this.seq = Math.max(this.seq, command.seq);
      return;
    }
    if (command.seq <= this.seq) return; // replayed: mpota_cmd's seq rule
    this.seq = command.seq;
    const report = (body: Record<string, unknown>) =>
      client.publishAsync(`${this.base}/ack`, JSON.stringify(body), { qos: 1 });
    await report({ job: command.job, ready: true, pull: true });
    await client.publishAsync(`${this.base}/status`, "ota", { qos: 1, retain: true });
    try {
      await this.update(client, command, report);
    } catch (error) {
      // The agent reports why it stopped: final when the release itself is wrong, else it tries again.
      const why = (error as Error).message;
      await report({ job: command.job, error: why.slice(0, 200), final: this.failure !== undefined });
      throw error;
    }
  }

  private async update(
    client: MqttClient,
    command: SignedAppCommand,
    report: (body: Record<string, unknown>) => Promise<unknown>,
  ): Promise<void> {
    const manifestBytes = await this.get(`${command.url}/manifest`, command.size);
    const sha = createHash("sha256").update(manifestBytes).digest("hex");
    if (sha !== command.sha) this.fail(`the manifest's SHA-256 ${sha} is not the command's ${command.sha}`);
    let manifest: ReturnType<typeof verifyAppManifest>;
    try {
      manifest = verifyAppManifest(manifestBytes, [this.o.appKey]);
    } catch (error) {
      this.fail(`the manifest does not verify with the app key: ${(error as Error).message}`);
    }
    if (manifest.name !== command.name || manifest.version !== command.ver)
      this.fail(
        `the command names ${command.name} ${command.ver}, the manifest ${manifest.name} ${manifest.version}`,
      );
    const held = new Set(this.app.files.map((f) => `${f.sha256} ${f.path}`));
    const p = { job: command.job, got: 0, total: manifest.total, files: 0, of: manifest.files.length };
    // mpota_appjob: a report after the free-space check, then as files are staged.
    await report(p);
    let last = 0;
    for (const file of manifest.files) {
      // Same path and digest as in the running slot: copied on the board, no bytes travel.
      const fetched = !held.has(`${file.sha256} ${file.path}`);
      if (fetched) {
        const bytes = await this.get(`${command.url}/file/${file.sha256}`, file.size);
        const digest = createHash("sha256").update(bytes).digest("hex");
        if (digest !== file.sha256)
          this.fail(
            `${file.path}: its SHA-256 is ${digest}, the manifest's ${file.sha256}; nothing was switched`,
          );
        this.filesFetched++;
      }
      p.files++;
      p.got += file.size;
      if ((fetched || p.got - last >= REPORT_EVERY || p.files % 8 === 0) && p.files < p.of) {
        await report(p);
        last = p.got;
      }
    }
    await report({ ...p, done: true });
    // machine.reset(): the session ends cleanly (no will), the new app boots on trial.
    await client.endAsync();
    this.client = undefined;
    await new Promise((resolve) => setTimeout(resolve, this.o.bootMs));
    this.app = { name: manifest.name, version: manifest.version, id: manifest.id, files: manifest.files };
    this.o.onBoot?.(manifest.id);
    await this.start();
  }

  /**
   * One GET on a connection of its own (mpota_http: HTTP/1.0, one request a
   * socket), with the device's MQTT credentials; the body must be exactly
   * `size` bytes (the agent refuses another Content-Length).
   */
  private get(url: string, size: number): Promise<Buffer> {
    this.httpRequests++;
    const auth = Buffer.from(`${this.o.id}:${this.o.password}`).toString("base64");
    return new Promise<Buffer>((resolve, reject) => {
      const req = request(url, { agent: false, headers: { authorization: `Basic ${auth}` } }, (response) => {
        const length = Number(response.headers["content-length"]);
        if (response.statusCode !== 200 || length !== size) {
          response.resume();
          reject(
            new Error(
              `GET ${url}: HTTP ${response.statusCode}, ${response.headers["content-length"]} bytes where ${size} were due`,
            ),
          );
          return;
        }
        const chunks: Buffer[] = [];
        let got = 0;
        response.on("data", (chunk: Buffer) => {
          got += chunk.length;
          if (got > size) response.destroy(new Error(`GET ${url}: more than the ${size} bytes announced`));
          else chunks.push(chunk);
        });
        response.on("end", () => {
          this.bytesFetched += got;
          if (got === size) resolve(Buffer.concat(chunks));
          else reject(new Error(`GET ${url}: ${got} of ${size} bytes`));
        });
        response.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.endAsync().catch(() => undefined);
  }
}
