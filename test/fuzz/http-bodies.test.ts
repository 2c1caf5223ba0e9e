import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type HttpTestServer, startHttpServer } from "../http/support.ts";
import { tempDir } from "../server/support/test-server.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { assertClearMessage, fuzz, fuzzRuns, fuzzSeed, mutate, type Rng } from "./fuzz.ts";
import {
  assertNoPrototypePollution,
  deepJson,
  edgeString,
  jsonObject,
  jsonText,
  mutateObject,
} from "./json-values.ts";

interface HttpInput {
  method: string;
  path: string;
  contentType: string | null;
  body: Uint8Array | null;
}

/** The API's routes that take a JSON body, with a valid body each (docs/dashboard.md). */
const JSON_ROUTES: Array<{ path: string; body: Record<string, unknown> }> = [
  { path: "/api/v1/devices", body: { id: "dev-7", host: "192.0.2.1", port: 1883 } },
  { path: "/api/v1/devices/dev-1/allow-unsigned", body: { allow: true } },
  { path: "/api/v1/update", body: { device: "dev-1", firmware: "sensor", allowDowngrade: false } },
  { path: "/api/v1/update/line", body: { firmware: "sensor", concurrency: 2, allowDowngrade: false } },
  { path: "/api/v1/rollouts", body: { firmware: "sensor", devices: ["dev-1", "dev-2"], groups: "1,rest" } },
  { path: "/api/v1/rollouts/no-such/pause", body: { reason: "why" } },
  { path: "/api/v1/rollouts/no-such/resume", body: {} },
  { path: "/api/v1/rollouts/no-such/abort", body: { reason: "why" } },
  { path: "/api/v1/jobs/no-such/cancel", body: {} },
];

/** GET routes whose query strings are read. */
const QUERY_ROUTES = [
  "/api/v1/devices/dev-1?history=",
  "/api/v1/jobs?device=dev-1&active=true&limit=",
  "/api/v1/audit?limit=5&before=",
  "/api/v1/rollouts?active=true&limit=",
  "/api/v1/rollouts/no-such?events=",
  "/api/v1/jobs/",
  "/api/v1/devices/",
];

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "application/octet-stream",
  null,
];

function httpInput(rng: Rng, image: Uint8Array): HttpInput {
  const r = rng.int(20);
  if (r <= 13) {
    const route = rng.pick(JSON_ROUTES);
    const body = jsonText(
      rng,
      () => (rng.chance(0.8) ? mutateObject(rng, route.body) : jsonObject(rng)),
      60_000,
    );
    return {
      method: rng.chance(0.95) ? "POST" : rng.pick(["PUT", "DELETE", "GET"]),
      path: route.path,
      contentType: rng.chance(0.9) ? "application/json" : rng.pick(CONTENT_TYPES),
      body: rng.chance(0.97) ? body : null,
    };
  }
  if (r <= 16) {
    const value = rng.chance(0.5)
      ? new URLSearchParams([["v", edgeString(rng)]]).toString().slice(2)
      : rng.pick(["-1", "0", "1e3", "99999999999999999999", "%", "%zz", "1.5"]);
    return { method: "GET", path: `${rng.pick(QUERY_ROUTES)}${value}`, contentType: null, body: null };
  }
  // Firmware uploads: a real image mutated, or random bytes, with odd names and flash sizes.
  const bytes = rng.chance(0.8) ? mutate(rng, image) : rng.bytes(rng.length(5000));
  const q = new URLSearchParams();
  if (rng.chance(0.9)) q.set("name", rng.chance(0.7) ? "fuzzed" : edgeString(rng));
  if (rng.chance(0.9)) q.set("version", rng.chance(0.7) ? `0.${rng.int(1_000_000)}` : edgeString(rng));
  if (rng.chance(0.3)) q.set("flash", rng.pick(["0", "1", "1048576", "4194304", "99999999999", "x"]));
  if (rng.chance(0.3)) q.set("force", rng.pick(["true", "no", "maybe"]));
  if (rng.chance(0.2)) q.set("filename", edgeString(rng));
  return {
    method: "POST",
    path: `/api/v1/firmware?${q}`,
    contentType: rng.pick([
      "application/octet-stream",
      "application/octet-stream",
      "multipart/form-data",
      null,
    ]),
    body: bytes,
  };
}

describe("fuzz: HTTP request bodies", () => {
  let t: ReturnType<typeof tempDir>;
  let s: HttpTestServer;
  const image = buildMicroPythonImage({ size: 40000, seed: 41 });

  before(async () => {
    t = tempDir("mpota-fuzz-http-");
    s = await startHttpServer(t.dir);
    await s.server.library.add({ bytes: image, name: "sensor", version: "1.0.0" });
    for (const id of ["dev-1", "dev-2"]) {
      await s.server.storage.devices.recordState({
        id,
        state: { v: 2, fw: imageIdentity(image), ip: "127.0.0.1" },
        at: Date.now(),
        digest: id,
        nextWakeAt: null,
        historyLimit: 10,
      });
    }
  });
  after(async () => {
    await s?.stop();
    t?.remove();
  });

  async function send(input: HttpInput): Promise<{ status: number; text: string }> {
    const headers: Record<string, string> = { authorization: `Bearer ${s.token}` };
    if (input.contentType) headers["content-type"] = input.contentType;
    const response = await fetch(`${s.base}${input.path}`, {
      method: input.method,
      headers,
      ...(input.body && input.method !== "GET" ? { body: input.body } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, text: await response.text() };
  }

  it("every request gets an answer that is not a 500: the result, or a 4xx with a clear error", async () => {
    await fuzz({
      name: "HTTP request",
      seed: fuzzSeed(0x4777),
      runs: fuzzRuns(1000),
      concurrency: 16,
      regressions: [
        {
          method: "POST",
          path: "/api/v1/update",
          contentType: "application/json",
          body: Buffer.from(deepJson(10000, "object")),
        },
        {
          method: "POST",
          path: "/api/v1/rollouts",
          contentType: "application/json",
          body: Buffer.from(deepJson(30000, "array")),
        },
      ],
      generate: (rng) => httpInput(rng, image),
      check: async (input) => {
        const { status, text } = await send(input);
        assert.ok(status < 500, `status ${status}: ${text.slice(0, 500)}`);
        if (status >= 400) {
          const body = JSON.parse(text) as { error?: unknown; status?: unknown };
          assertClearMessage(body.error, "error");
          assert.equal(body.status, status);
        }
        assertNoPrototypePollution();
      },
    });
    const info = await send({ method: "GET", path: "/api/v1/info", contentType: null, body: null });
    assert.equal(info.status, 200);
    assert.deepEqual(
      s.logs.lines.filter((l) => l.level >= 50),
      [],
      "the server logged errors",
    );
  });
});
