import { constants, createHash, sign } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { CommandSigner } from "./support.ts";

/** The fields of a contract v3 pull command. */
export interface PullFields {
  v?: unknown;
  op?: unknown;
  dev: string;
  seq: number;
  job: string;
  fw: string;
  size: number;
  ver: string;
  down: number;
  sha: string;
  url: string;
}

/** The signed bytes of a pull command, exactly as the design note lays them out. */
export function pullMessage(f: PullFields, header = "mpota-cmd/3"): string {
  return [header, f.dev, f.seq, "pull", f.job, f.fw, f.size, f.ver, f.down, f.sha, f.url].join("\n");
}

/**
 * A pull command as JSON, signed with node:crypto over `message` (default:
 * the note's bytes), independently of the server's signer: the two sides
 * meet only in the bytes.
 */
export function signedPull(f: PullFields, by: CommandSigner, message = pullMessage(f)): string {
  const sig = sign("sha256", Buffer.from(message), {
    key: by.privateKey,
    padding: constants.RSA_PKCS1_PADDING,
  });
  return JSON.stringify({ v: 3, op: "pull", ...f, kid: by.kid, sig: sig.toString("base64") });
}

export const sha256Hex = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** One GET the image server answered. */
export interface ImageRequest {
  path: string;
  authorization: string | undefined;
  range: string | undefined;
  status: number;
  /** Body bytes written to the socket. */
  sent: number;
}

/**
 * The server's device route as a stand-in (the real one is the server's):
 * `GET /device/firmware/<fw>` with Basic auth, `Range: bytes=N-` -> 206.
 * `corrupt` flips one byte of what it sends; `dropAfter` cuts the next
 * transfer after that many body bytes (once); `holdAfter` stalls it there.
 */
export class ImageServer {
  readonly requests: ImageRequest[] = [];
  corrupt = false;
  dropAfter: number | undefined;
  /** Sends the next transfer only up to that many body bytes, then holds it open (once). */
  holdAfter: number | undefined;
  private readonly images = new Map<string, Uint8Array>();

  private constructor(
    private readonly server: Server,
    readonly base: string,
    private readonly auth: string,
  ) {}

  static async start(user: string, password: string): Promise<ImageServer> {
    let self: ImageServer | undefined;
    const server = createServer((req, res) => self?.answer(req, res));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    self = new ImageServer(server, base, `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`);
    return self;
  }

  add(fw: string, image: Uint8Array): string {
    this.images.set(fw, image);
    return `${this.base}/device/firmware/${fw}`;
  }

  close(): void {
    this.server.closeAllConnections();
    this.server.close();
  }

  private answer(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
    const path = req.url ?? "";
    const seen: ImageRequest = {
      path,
      authorization: req.headers.authorization,
      range: req.headers.range,
      status: 0,
      sent: 0,
    };
    this.requests.push(seen);
    const reply = (status: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
      seen.status = status;
      res.writeHead(status, headers);
      if (body === undefined) {
        res.end();
        return;
      }
      const drop = this.dropAfter;
      if (drop !== undefined && drop < body.length) {
        this.dropAfter = undefined;
        seen.sent = drop;
        res.write(body.subarray(0, drop), () => res.socket?.destroy());
        return;
      }
      const hold = this.holdAfter;
      if (hold !== undefined && hold < body.length) {
        this.holdAfter = undefined;
        seen.sent = hold;
        res.write(body.subarray(0, hold));
        return;
      }
      seen.sent = body.length;
      res.end(body);
    };
    if (req.headers.authorization !== this.auth) {
      reply(401, { "WWW-Authenticate": "Basic" });
      return;
    }
    const image = this.images.get(path.split("/").at(-1) ?? "");
    if (!path.startsWith("/device/firmware/") || !image) {
      reply(404);
      return;
    }
    const body = Buffer.from(image);
    if (this.corrupt) body[body.length >> 1] ^= 0x01;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range) {
      const from = Number(range[1]);
      reply(
        206,
        {
          "Content-Length": body.length - from,
          "Content-Range": `bytes ${from}-${body.length - 1}/${body.length}`,
        },
        body.subarray(from),
      );
      return;
    }
    reply(200, { "Content-Length": body.length }, body);
  }
}
