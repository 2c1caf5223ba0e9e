import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { BRIDGE_REQUEST_NAMES } from "../../src/server/api/api.ts";
import { jsonNesting, jsonNestingProblem, MAX_JSON_NESTING } from "../../src/server/base/json-nesting.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { parseRolloutRequest } from "../../src/server/rollouts/rollout-request.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { assertClearError, assertClearMessage, fuzz, fuzzRuns, fuzzSeed, type Rng } from "./fuzz.ts";
import {
  assertNoPrototypePollution,
  deepJson,
  jsonObject,
  jsonText,
  jsonValue,
  mutateObject,
} from "./json-values.ts";

const FW = "0123456789abcdef0123456789abcdef";

/** Valid `rollout/create` requests (docs/rollouts.md). */
const VALID_ROLLOUTS: Record<string, unknown>[] = [
  { firmware: "sensor", devices: ["dev-1", "dev-2"], groups: "1,10%,rest" },
  {
    firmware: `sensor@1.0.0`,
    tag: "kitchen",
    groups: [{ count: 1, approve: true }, { percent: 50, successThreshold: 90 }, { rest: true }],
    successThreshold: 95,
    errorThreshold: 10,
    minExecuted: 2,
    retries: 3,
    timeout: 600,
    concurrency: 5,
    allowDowngrade: false,
    onError: "abort",
    startAt: "2030-01-31T22:00:00Z",
    name: "spring update",
  },
  { firmware: FW, line: "sensor", startAt: 1_900_000_000_000 },
];

/** How deeply a value nests lists and objects (a primitive: 0). */
function depthOf(value: unknown): number {
  if (typeof value !== "object" || value === null) return 0;
  return 1 + Math.max(0, ...Object.values(value).map(depthOf));
}

describe("fuzz: bridge requests", () => {
  it("jsonNesting counts the depth of any JSON text, brackets inside strings left out", async () => {
    await fuzz({
      name: "jsonNesting",
      seed: fuzzSeed(0xdee9),
      runs: fuzzRuns(2000),
      generate: (rng) => {
        let value: unknown = jsonValue(rng);
        for (let i = rng.int(80); i > 0; i--) value = rng.chance(0.5) ? [value, ']]\\"[{'] : { '{["': value };
        return value;
      },
      check: (value) => {
        const text = JSON.stringify(value);
        assert.equal(jsonNesting(text), depthOf(value));
        assert.equal(jsonNestingProblem(text, "It") === undefined, depthOf(value) <= MAX_JSON_NESTING);
      },
    });
  });

  it("rollout/create: any request is checked into a plan, or refused with a clear RequestError", async () => {
    await fuzz({
      name: "parseRolloutRequest",
      seed: fuzzSeed(0x4011),
      runs: fuzzRuns(4000),
      // Found by this test: a startAt of 1e300 ms was taken, and the engine's
      // "starts <date>" message then threw a RangeError (Invalid time value).
      regressions: [
        { ...(VALID_ROLLOUTS[2] as object), startAt: 1e300 },
        { ...(VALID_ROLLOUTS[0] as object), startAt: 8.64e15 + 1 },
      ],
      generate: (rng) => (rng.chance(0.85) ? mutateObject(rng, rng.pick(VALID_ROLLOUTS)) : jsonObject(rng)),
      check: (request) => {
        let input: ReturnType<typeof parseRolloutRequest>;
        try {
          input = parseRolloutRequest(request);
        } catch (error) {
          assertClearError(error, RequestError);
          return;
        } finally {
          assertNoPrototypePollution();
        }
        assert.ok(input.firmware.length > 0);
        assert.ok(input.groups.length > 0);
        assert.ok(input.timeoutMs > 0 && Number.isFinite(input.timeoutMs));
        assert.ok(input.concurrency >= 1);
        if (input.startAt !== undefined) new Date(input.startAt).toISOString(); // the engine prints it
        JSON.stringify(input); // the store keeps it
      },
    });
  });

  describe("over MQTT, against a running server", () => {
    let t: ReturnType<typeof tempDir>;
    let s: TestServer;
    let client: MqttClient;
    const waiting = new Map<string, (reply: Record<string, unknown>) => void>();
    const image = buildMicroPythonImage({ size: 40000, seed: 31 });

    /** A valid request of each name, for the mutations to start from. */
    const VALID: Record<string, Record<string, unknown>> = {
      device: { id: "dev-1", history: 5 },
      "firmware/add": {
        image: Buffer.from(image).toString("base64"),
        name: "other",
        version: "2.0.0",
        notes: "n",
      },
      "firmware/remove": { id: "nothing@1.0.0" },
      update: { device: "dev-1", firmware: "sensor", allowDowngrade: false },
      jobs: { device: "dev-1", active: true, limit: 10 },
      job: { id: "no-such-job" },
      "job/cancel": { id: "no-such-job" },
      "devices/add": { id: "dev-9", host: "192.0.2.1", port: 1883 },
      "devices/rotate": { id: "dev-1", host: "192.0.2.1", port: 1883 },
      "devices/revoke": { id: "dev-8" },
      "devices/allow-unsigned": { id: "dev-1", allow: true },
      audit: { limit: 5, before: 1_900_000_000_000 },
      "rollout/create": VALID_ROLLOUTS[0] as Record<string, unknown>,
      "rollout/list": { active: true, limit: 5 },
      "rollout/show": { id: "no-such-rollout", events: 5 },
      "rollout/pause": { id: "no-such-rollout", reason: "why" },
      "rollout/resume": { id: "no-such-rollout" },
      "rollout/abort": { id: "no-such-rollout", reason: "why" },
      "device/tags": { id: "dev-1", tags: ["kitchen", "floor-2"] },
    };

    before(async () => {
      t = tempDir("mpota-fuzz-");
      s = await startTestServer(t.dir);
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
      client = await connectAsync(s.url, { reconnectPeriod: 0 });
      client.on("message", (topic, payload) => {
        const name = topic.slice("mpota/bridge/response/".length);
        const reply = JSON.parse(payload.toString("utf8")) as Record<string, unknown>;
        const key = `${name}\u0000${String(reply.transaction ?? "")}`;
        waiting.get(key)?.(reply);
        waiting.delete(key);
      });
      await client.subscribeAsync("mpota/bridge/response/#", { qos: 1 });
    });
    after(async () => {
      await client?.endAsync();
      await s?.stop();
      t?.remove();
    });

    /** Replies without a transaction are told apart only by name: one such request per name at a time. */
    const busy = new Map<string, Promise<unknown>>();

    /** Publishes one request and waits for its reply (matched by name and the transaction it carries). */
    async function request(
      name: string,
      payload: Uint8Array,
      transaction: string,
    ): Promise<Record<string, unknown>> {
      const key = `${name}\u0000${transaction}`;
      while (busy.has(key)) await busy.get(key);
      const done = send(key, name, payload);
      busy.set(
        key,
        done.catch(() => undefined),
      );
      try {
        return await done;
      } finally {
        busy.delete(key);
      }
    }

    async function send(key: string, name: string, payload: Uint8Array): Promise<Record<string, unknown>> {
      const reply = new Promise<Record<string, unknown>>((resolve) => waiting.set(key, resolve));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply to ${name} within 10 s`)), 10_000);
      });
      try {
        await Promise.race([
          client.publishAsync(`mpota/bridge/request/${name}`, Buffer.from(payload), { qos: 1 }),
          timeout,
        ]);
        return await Promise.race([reply, timeout]);
      } finally {
        clearTimeout(timer);
        waiting.delete(key);
      }
    }

    function bridgeInput(
      rng: Rng,
      index: number,
    ): { name: string; payload: Uint8Array; transaction: string } {
      const name = rng.chance(0.97)
        ? rng.pick(BRIDGE_REQUEST_NAMES)
        : rng.pick(["nope", "firmware", "rollout/"]);
      const transaction = `f${index}`;
      const valid = VALID[name] ?? {};
      const payload = jsonText(
        rng,
        () => ({ ...(rng.chance(0.8) ? mutateObject(rng, valid) : jsonObject(rng)), transaction }),
        60_000,
      );
      // The reply carries the transaction the bridge reads (a mutation may have changed it), else none.
      let carried = "";
      try {
        const parsed = JSON.parse(Buffer.from(payload).toString("utf8"));
        const t =
          typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
            ? parsed.transaction
            : undefined;
        if (typeof t === "string" || typeof t === "number") carried = String(t);
      } catch {
        carried = "";
      }
      return { name, payload, transaction: carried };
    }

    it("every request gets an ok or a clear error reply, never an internal error, and the server stays up", async () => {
      await fuzz({
        name: "bridge request",
        seed: fuzzSeed(0xb41d),
        runs: fuzzRuns(1200),
        concurrency: 32,
        regressions: [
          // Found by this test: JSON nested 6,000 deep made the embedded broker's JSON.stringify (stamping
          // $caller) throw a RangeError, and the request was never answered nor acknowledged.
          { name: "devices/rotate", payload: Buffer.from(deepJson(6000, "object")), transaction: "" },
          { name: "jobs", payload: Buffer.from(deepJson(30000, "array")), transaction: "" },
          // Found by this test: a refused or unknown firmware name was echoed whole (5,000 characters) in the reply.
          {
            name: "job/cancel",
            payload: Buffer.from(JSON.stringify({ id: "x".repeat(5000), transaction: "r3" })),
            transaction: "r3",
          },
          {
            name: "firmware/remove",
            payload: Buffer.from(JSON.stringify({ id: "x".repeat(5000), transaction: "r2" })),
            transaction: "r2",
          },
          {
            name: "firmware/add",
            payload: Buffer.from(
              JSON.stringify({ image: "AAAA", name: "x".repeat(5000), version: "1", transaction: "r1" }),
            ),
            transaction: "r1",
          },
        ],
        generate: bridgeInput,
        check: async ({ name, payload, transaction }) => {
          const reply = await request(name, payload, transaction);
          assert.ok(reply.status === "ok" || reply.status === "error", `status ${String(reply.status)}`);
          if (reply.status === "error") {
            assertClearMessage(reply.error, "error");
            assert.doesNotMatch(String(reply.error), /please report it/, `internal error: ${reply.error}`);
          }
          assertNoPrototypePollution();
        },
      });
      const info = await request("info", Buffer.from(JSON.stringify({ transaction: "last" })), "last");
      assert.equal(info.status, "ok");
      const errors = s.logs.lines.filter((l) => l.level >= 50);
      assert.deepEqual(errors, [], "the server logged errors");
    });
  });
});
