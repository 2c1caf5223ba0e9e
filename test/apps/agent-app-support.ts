import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { PublishedMessage } from "../../src/agent-host/mqtt-packets.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import { encodeCommand, signCommand } from "../../src/protocol/command-signature.ts";
import type { CommandSigner } from "../agent/support.ts";
import { KEY, MODULUS } from "./slot-board.ts";

// The pieces of the agent's app tests: releases signed with the host's
// code, a stand-in for the server's device route (node:http, Basic auth,
// 401/403/404, counting what it sends), signed app commands, and a
// simulated ESP8266 whose main.py runs the loader and then the agent.

export const sha256Hex = (b: Uint8Array | string): string => createHash("sha256").update(b).digest("hex");

export interface AppRelease {
  version: string;
  files: Record<string, string>;
  manifest: Buffer;
  /** SHA-256 of the manifest: the release's identity on the board. */
  sha: string;
}

export function appRelease(version: string, files: Record<string, string>): AppRelease {
  const manifest = signAppManifest(
    {
      name: "thermostat",
      version,
      boards: ["esp32", "esp8266", "rp2"],
      mpy: undefined,
      files: Object.entries(files).map(([path, text]) => ({
        path,
        size: Buffer.byteLength(text),
        sha256: sha256Hex(text),
      })),
    },
    KEY,
  ).bytes;
  return { version, files, manifest, sha: sha256Hex(manifest) };
}

/** A 20-file app (about 20 KiB): main.py and m01..m19; `changed` gives one module the version's text. */
export function twentyFiles(version: string, changed?: number, main?: string): AppRelease {
  const files: Record<string, string> = {
    "main.py": main ?? 'import m01, m07\nprint("app", m01.V, m07.V)\n',
  };
  for (let i = 1; i < 20; i++) {
    const head = `V = "${i === changed ? version : "1.0.0"}"\nI = ${i}\nDATA = "`;
    files[`m${String(i).padStart(2, "0")}.py`] = `${head}${"x".repeat(1000 - head.length - 2)}"\n`;
  }
  return appRelease(version, files);
}

export interface AppRequest {
  path: string;
  status: number;
  /** Body bytes written. */
  sent: number;
}

/**
 * The server's `/device/app/<sha>/manifest|file/<file sha>` as a stand-in:
 * Basic auth with the device id and its password (401 without), 403 for a
 * release that is not `active` (the device's job), 404 for an unknown release,
 * a file its manifest does not list, or any other path.
 */
export class AppServer {
  readonly requests: AppRequest[] = [];
  readonly releases = new Map<string, AppRelease>();
  active: string | undefined;
  /** The request for this file is answered with `after` body bytes, then the socket is closed (once). */
  cut: { file: string; after: number } | undefined;
  /** This file is sent `bytes` at a time, a piece every `everyMs` (a slow link). */
  trickle: { file: string; bytes: number; everyMs: number } | undefined;
  /** At the request for this file, `run` is called instead of answering (once); the socket is left open. */
  hold: { file: string; run: () => void } | undefined;
  /** Called at each file request, with the file's path, before it is answered. */
  onFile: ((path: string) => void) | undefined;
  /** A file path served with one byte changed (same length). */
  corrupt: string | undefined;

  private constructor(
    private readonly server: Server,
    readonly base: string,
    private readonly auth: string,
  ) {}

  static async start(user: string, password: string): Promise<AppServer> {
    let self: AppServer | undefined;
    const server = createServer((req, res) => self?.answer(req, res));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    self = new AppServer(server, base, `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`);
    return self;
  }

  /** Holds the release; returns its url, as the command carries it. */
  add(r: AppRelease): string {
    this.releases.set(r.sha, r);
    return `${this.base}/device/app/${r.sha}`;
  }

  /** The requests from index `from` on, their paths shortened to `manifest` or the file's path. */
  since(from: number): Array<{ what: string; status: number; sent: number }> {
    return this.requests
      .slice(from)
      .map((q) => ({ what: this.name(q.path), status: q.status, sent: q.sent }));
  }

  close(): void {
    this.server.closeAllConnections();
    this.server.close();
  }

  private name(path: string): string {
    const m = /^\/device\/app\/([0-9a-f]{64})\/(manifest|file\/([0-9a-f]{64}))$/.exec(path);
    const r = m && this.releases.get(m[1] as string);
    if (!m || !r) return path;
    if (m[2] === "manifest") return "manifest";
    const hit = Object.entries(r.files).find(([, t]) => sha256Hex(t) === m[3]);
    return hit ? hit[0] : path;
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? "";
    const seen: AppRequest = { path, status: 0, sent: 0 };
    this.requests.push(seen);
    const reply = (status: number, body?: Uint8Array, headers: Record<string, string> = {}) => {
      seen.status = status;
      res.writeHead(status, { ...headers, ...(body ? { "Content-Length": String(body.length) } : {}) });
      if (!body) {
        res.end();
        return;
      }
      const cut = this.cut;
      if (cut !== undefined && this.name(path) === cut.file) {
        this.cut = undefined;
        seen.sent = cut.after;
        res.write(body.subarray(0, cut.after), () => res.socket?.destroy());
        return;
      }
      seen.sent = body.length;
      const slow = this.trickle;
      if (slow !== undefined && this.name(path) === slow.file) {
        let at = 0;
        const next = () => {
          if (res.destroyed) return;
          at += slow.bytes;
          if (at >= body.length) res.end(body.subarray(at - slow.bytes));
          else res.write(body.subarray(at - slow.bytes, at), () => setTimeout(next, slow.everyMs));
        };
        next();
        return;
      }
      res.end(body);
    };
    if (req.headers.authorization !== this.auth) {
      reply(401, undefined, { "WWW-Authenticate": 'Basic realm="mpota devices"' });
      return;
    }
    const m = /^\/device\/app\/([0-9a-f]{64})\/(manifest|file\/([0-9a-f]{64}))$/.exec(path);
    const r = m ? this.releases.get(m[1] as string) : undefined;
    if (!m || !r) {
      reply(404, Buffer.from("unknown release"));
      return;
    }
    if (m[1] !== this.active) {
      reply(403, Buffer.from("not this device's job"));
      return;
    }
    if (m[2] === "manifest") {
      reply(200, r.manifest);
      return;
    }
    const hit = Object.entries(r.files).find(([, t]) => sha256Hex(t) === m[3]);
    if (!hit) {
      reply(404, Buffer.from("not a file of this release"));
      return;
    }
    this.onFile?.(hit[0]);
    const hold = this.hold;
    if (hold?.file === hit[0]) {
      this.hold = undefined;
      hold.run();
      return;
    }
    const body = Buffer.from(hit[1]);
    if (this.corrupt === hit[0]) body[body.length >> 1] ^= 0x01;
    reply(200, body);
  }
}

/** A signed app command for release r (the JSON the server publishes). */
export function appCommand(
  by: CommandSigner,
  dev: string,
  seq: number,
  job: string,
  r: AppRelease,
  url: string,
  down: 0 | 1 = 0,
): string {
  return encodeCommand(
    signCommand(
      {
        op: "app",
        dev,
        seq,
        job,
        name: "thermostat",
        ver: r.version,
        down,
        sha: r.sha,
        size: r.manifest.length,
        url,
      },
      by.privateKey,
    ),
  );
}

export const PASSWORD = "s3cr:et";

/** A simulated ESP8266 (LittleFS) that runs apps: the loader, then the always-on agent. */
export function appDevice(
  broker: string,
  id: string,
  signer: CommandSigner,
  extra: Partial<ConstructorParameters<typeof AgentDevice>[0]> = {},
): AgentDevice {
  return new AgentDevice({
    broker,
    flash: new Uint8Array(4096),
    id,
    commandKeys: [signer.modulusHex],
    appKeys: [MODULUS],
    config: { MQTT_USER: id, MQTT_PASSWORD: PASSWORD, RETRY_MS: 200 },
    ...extra,
  });
}

type Json = Record<string, unknown>;
const json = (m: PublishedMessage): Json => JSON.parse(m.payload.toString()) as Json;

export const acks = (d: AgentDevice, job?: string): Json[] =>
  d.published
    .filter((m) => m.topic.endsWith("/ack"))
    .map(json)
    .filter((a) => job === undefined || a.job === job);
export const states = (d: AgentDevice): Json[] =>
  d.published.filter((m) => m.topic.endsWith("/state")).map(json);

/** Resolves with the first state published from now on whose app satisfies `test`. */
export function nextState(d: AgentDevice, test: (app: Json) => boolean, timeoutMs = 30_000): Promise<Json> {
  return d
    .waitFor("published", (m) => m.topic.endsWith("/state") && test((json(m).app ?? {}) as Json), timeoutMs)
    .then(json);
}

/** Resolves with the next ack from now on that satisfies `test`. */
export function nextAck(d: AgentDevice, test: (a: Json) => boolean, timeoutMs = 30_000): Promise<Json> {
  return d.waitFor("published", (m) => m.topic.endsWith("/ack") && test(json(m)), timeoutMs).then(json);
}

/**
 * Resolves with the first state from now on whose app satisfies `test`, once
 * the status `online` that follows it is out: the agent has then confirmed
 * the app and finished the job's record.
 */
export async function settled(
  d: AgentDevice,
  test: (app: Json) => boolean,
  timeoutMs = 60_000,
): Promise<Json> {
  let state: Json | undefined;
  await d.waitFor(
    "published",
    (m) => {
      if (m.topic.endsWith("/state")) {
        const s = json(m);
        state = test((s.app ?? {}) as Json) ? s : undefined;
      }
      return state !== undefined && m.topic.endsWith("/status") && m.payload.toString() === "online";
    },
    timeoutMs,
  );
  return state as Json;
}
