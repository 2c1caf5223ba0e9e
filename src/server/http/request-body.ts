import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-error.ts";

/** What bounds a request body (the named settings of HttpLimits). */
export interface BodyLimits {
  jsonBodyBytes: number;
  bodyIdleMs: number;
}

/** A request whose client closed the connection before its body arrived: nobody is left to answer. */
export class ClientGoneError extends HttpError {}

function tooLarge(limit: number, what: string): HttpError {
  return new HttpError(
    413,
    `${what} is larger than ${limit.toLocaleString("en-US")} bytes; it was not accepted.`,
    {
      limit,
    },
  );
}

function declaredLength(request: IncomingMessage): number | undefined {
  const header = request.headers["content-length"];
  if (header === undefined) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * The body's bytes, refused (413) before reading when Content-Length says
 * more than `limit`, and as soon as more than `limit` bytes arrive (the
 * rest is drained, not kept). A body that stops arriving for `idleMs` (a
 * Content-Length larger than what the client sends) is answered 408 and
 * its connection closed, rather than held until the client gives up.
 */
function readBody(request: IncomingMessage, limit: number, idleMs: number, what: string): Promise<Buffer> {
  const length = declaredLength(request);
  if (length !== undefined && length > limit) {
    request.resume();
    return Promise.reject(tooLarge(limit, what));
  }
  // Already read to its end (nothing is left to wait for).
  if (request.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const settle = (error: Error | undefined) => {
      clearTimeout(timer);
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("close", onClose);
      request.off("error", onClose);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        settle(
          new HttpError(
            408,
            `The request body stopped arriving: ${size.toLocaleString("en-US")} of ${length === undefined ? "its" : length.toLocaleString("en-US")} bytes came, then nothing for ${idleMs / 1000} s. Send the whole body; Content-Length must be its size.`,
            { received: size, ...(length !== undefined ? { declared: length } : {}) },
            { connection: "close" },
          ),
        );
      }, idleMs);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        settle(tooLarge(limit, what));
        request.resume();
        return;
      }
      chunks.push(chunk);
      arm();
    };
    const onEnd = () => settle(undefined);
    const onClose = () => {
      if (request.complete) return;
      settle(
        new ClientGoneError(
          400,
          `The client closed the connection after ${size} of ${length ?? "its"} bytes of the request body.`,
        ),
      );
    };
    request.on("data", onData);
    request.on("end", onEnd);
    request.on("close", onClose);
    request.on("error", onClose);
    arm();
  });
}

/** Reads a JSON object body (at most `limits.jsonBodyBytes`); an empty body is `{}`. */
export async function readJsonBody(
  request: IncomingMessage,
  limits: BodyLimits,
): Promise<Record<string, unknown>> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  const body = await readBody(request, limits.jsonBodyBytes, limits.bodyIdleMs, "The request body");
  if (body.length === 0) return {};
  if (type !== "application/json") {
    throw new HttpError(415, 'Send the request body as JSON with "Content-Type: application/json".');
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(
      400,
      `The request body is not JSON (${(error as Error).message}). Send a JSON object.`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "The request body must be a JSON object.");
  }
  return value as Record<string, unknown>;
}

/**
 * Reads a raw upload into memory (it is at most `limit` bytes, a firmware
 * image), refusing it (413) as soon as it passes `limit`. Nothing of an
 * upload is written to disk here; the firmware store keeps what it accepts.
 */
export async function readUpload(
  request: IncomingMessage,
  limit: number,
  idleMs: number,
): Promise<Uint8Array> {
  const body = await readBody(request, limit, idleMs, "The uploaded file");
  if (body.length === 0)
    throw new HttpError(400, "The upload is empty: send the firmware file as the request body.");
  return body;
}
