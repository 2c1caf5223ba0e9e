import type { IncomingMessage } from "node:http";
import { HttpError } from "./http-error.ts";

export const MAX_JSON_BYTES = 64 * 1024;

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
 * rest is drained, not kept).
 */
async function readBody(request: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const length = declaredLength(request);
  if (length !== undefined && length > limit) {
    request.resume();
    throw tooLarge(limit, what);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      request.resume();
      throw tooLarge(limit, what);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** Reads a JSON object body (at most 64 KiB); an empty body is `{}`. */
export async function readJsonBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  const body = await readBody(request, MAX_JSON_BYTES, "The request body");
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
export async function readUpload(request: IncomingMessage, limit: number): Promise<Uint8Array> {
  const body = await readBody(request, limit, "The uploaded file");
  if (body.length === 0)
    throw new HttpError(400, "The upload is empty: send the firmware file as the request body.");
  return body;
}
