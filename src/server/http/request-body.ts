import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** Reads a JSON object body (at most 64 KiB); an empty body is `{}`. */
export async function readJsonBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  const length = declaredLength(request);
  if (length !== undefined && length > MAX_JSON_BYTES) {
    request.resume();
    throw tooLarge(MAX_JSON_BYTES, "The request body");
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_JSON_BYTES) {
      request.resume();
      throw tooLarge(MAX_JSON_BYTES, "The request body");
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  if (type !== "application/json") {
    throw new HttpError(415, 'Send the request body as JSON with "Content-Type: application/json".');
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
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
 * Streams a raw upload to a temporary file, refusing it (413) as soon as it
 * passes `limit` bytes, and returns its bytes. The temporary file is always
 * removed; nothing of a refused upload stays on disk.
 */
export async function readUpload(request: IncomingMessage, limit: number): Promise<Uint8Array> {
  const length = declaredLength(request);
  if (length !== undefined && length > limit) {
    request.resume();
    throw tooLarge(limit, "The uploaded file");
  }
  const dir = await mkdtemp(join(tmpdir(), "mpota-upload-"));
  const path = join(dir, `${randomBytes(4).toString("hex")}.bin`);
  try {
    const out = createWriteStream(path, { mode: 0o600 });
    let size = 0;
    try {
      for await (const chunk of request) {
        size += (chunk as Buffer).length;
        if (size > limit) {
          request.resume();
          throw tooLarge(limit, "The uploaded file");
        }
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
      }
    } finally {
      await new Promise<void>((resolve, reject) =>
        out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    }
    if (size === 0)
      throw new HttpError(400, "The upload is empty: send the firmware file as the request body.");
    return await readFile(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
