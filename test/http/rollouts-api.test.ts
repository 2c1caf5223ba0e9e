import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Command, CommanderError } from "commander";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerRolloutCommand } from "../../src/cli/rollout.ts";
import { MpotaError } from "../../src/errors.ts";
import { ID1, ID2, V1, V2, V3 } from "../rollouts/support.ts";
import { DeviceTwin } from "../server/support/device-twin.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { call, type HttpTestServer, type Reply, startHttpServer } from "./support.ts";

/** `mpota rollout ARGS --json` in-process, as main() runs it. */
async function mpotaJson(args: string[]): Promise<unknown> {
  const io = new MemoryIo();
  const program = new Command("mpota").enablePositionalOptions().exitOverride();
  registerRolloutCommand(program, io);
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    for (const sub of cmd.commands) configure(sub);
  };
  configure(program);
  try {
    await program.parseAsync(["node", "mpota", "rollout", ...args, "--json"]);
  } catch (error) {
    if (error instanceof CommanderError || error instanceof MpotaError)
      assert.fail(`mpota rollout ${args.join(" ")}: ${error.message}\n${io.stderrText}`);
    throw error;
  }
  return JSON.parse(io.stdout);
}

interface Received {
  id: string;
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: event payloads are checked field by field.
  data: any;
}

/** Reads the event stream; `events` fills as they arrive. */
async function openStream(s: HttpTestServer) {
  const controller = new AbortController();
  const response = await fetch(`${s.base}/api/v1/events`, {
    headers: { authorization: `Bearer ${s.token}` },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const events: Received[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let text = "";
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
          const fields = Object.fromEntries(
            text
              .slice(0, end)
              .split("\n")
              .filter((l) => !l.startsWith(":") && l.includes(": "))
              .map((l) => [l.slice(0, l.indexOf(": ")), l.slice(l.indexOf(": ") + 2)]),
          );
          text = text.slice(end + 2);
          if (fields.event)
            events.push({ id: fields.id, event: fields.event, data: JSON.parse(fields.data) });
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    events,
    close: async () => {
      controller.abort();
      await reading;
    },
  };
}

const IN_AN_HOUR = () => new Date(Date.now() + 3_600_000).toISOString();

describe("rollouts over the HTTP API", () => {
  const data = tempDir("mpota-http-rollouts-");
  const twins: DeviceTwin[] = [];
  let s: HttpTestServer;

  const rolloutsStored = async () => (await s.server.storage.rollouts.list()).length;
  const expectRefused = async (reply: Reply, status: number, pattern: RegExp, stored: number) => {
    assert.equal(reply.status, status, JSON.stringify(reply.body));
    assert.match(reply.body.error, pattern);
    assert.equal(reply.body.status, status);
    assert.equal(await rolloutsStored(), stored, "nothing stored");
  };

  before(async () => {
    s = await startHttpServer(data.dir);
    for (const [image, version] of [
      [V1, "1.0"],
      [V2, "2.0"],
      [V3, "1.5"],
    ] as const) {
      const added = await call(s, "POST", `/api/v1/firmware?name=sensor&version=${version}`, {
        body: image,
        headers: { "content-type": "application/octet-stream" },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
    }
    for (const id of ["h1", "h2", "h3", "h4", "h5"]) {
      const twin = new DeviceTwin({ url: s.url, id, image: V1 });
      twins.push(twin);
      await twin.start();
    }
    await eventually(
      async () =>
        (await call(s, "GET", "/api/v1/devices")).body.filter((d: { fw: string }) => d.fw === ID1).length ===
        5,
      "five devices on 1.0",
      20_000,
    );
  });
  after(async () => {
    for (const twin of twins) await twin.close();
    await s.stop();
    data.remove();
  });

  test("every rollout endpoint needs the token: 401 without it", async () => {
    for (const [method, path] of [
      ["GET", "/api/v1/rollouts"],
      ["POST", "/api/v1/rollouts"],
      ["GET", "/api/v1/rollouts/r-1"],
      ["POST", "/api/v1/rollouts/r-1/pause"],
      ["POST", "/api/v1/rollouts/r-1/resume"],
      ["POST", "/api/v1/rollouts/r-1/abort"],
    ] as const) {
      const r = await call(s, method, path, { token: false });
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.match(r.body.error, /Log in first/);
    }
    const wrongMethod = await call(s, "DELETE", "/api/v1/rollouts");
    assert.equal(wrongMethod.status, 405);
    assert.deepEqual(wrongMethod.body.allowed, ["GET", "POST"]);
    assert.equal((await call(s, "GET", "/api/v1/rollouts/r-1/nothing")).status, 404);
  });

  test("CSRF: cross-site changes are refused with 403, also with a valid session cookie, and change nothing", async () => {
    const login = await call(s, "POST", "/api/v1/login", { json: { token: s.token }, token: false });
    const session = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;
    const body = JSON.stringify({ firmware: "sensor@2.0", devices: ["h1"], startAt: IN_AN_HOUR() });
    for (const path of ["/api/v1/rollouts", "/api/v1/rollouts/r-1/pause", "/api/v1/rollouts/r-1/abort"]) {
      const crossSite = await call(s, "POST", path, {
        token: false,
        body,
        headers: {
          cookie: session,
          origin: "http://evil.example",
          "content-type": "text/plain",
        },
      });
      assert.equal(crossSite.status, 403, path);
      assert.match(crossSite.body.error, /another site/);
      const noHeader = await call(s, "POST", path, {
        token: false,
        body,
        headers: { cookie: session, "content-type": "application/json" },
      });
      assert.equal(noHeader.status, 403, path);
      assert.match(noHeader.body.error, /x-mpota-request/);
    }
    // The dashboard's way: the session cookie with the header, from its own origin.
    const list = await call(s, "GET", "/api/v1/rollouts", { token: false, headers: { cookie: session } });
    assert.deepEqual([list.status, list.body], [200, []]);
    assert.equal(await rolloutsStored(), 0);
  });

  test("bad input is answered with a clear JSON error, and nothing is stored", async () => {
    const post = (json: unknown) => call(s, "POST", "/api/v1/rollouts", { json });
    const ok = { firmware: "sensor@2.0", devices: ["h1", "h2"], startAt: IN_AN_HOUR() };
    await expectRefused(
      await call(s, "POST", "/api/v1/rollouts", {
        body: '{"firmware": "sensor@2.0",',
        headers: { "content-type": "application/json" },
      }),
      400,
      /The request body is not JSON/,
      0,
    );
    await expectRefused(
      await call(s, "POST", "/api/v1/rollouts", {
        body: "[1,2]",
        headers: { "content-type": "application/json" },
      }),
      400,
      /must be a JSON object/,
      0,
    );
    await expectRefused(await post({}), 400, /The request needs "firmware"/, 0);
    await expectRefused(
      await post({ ...ok, errorThreshold: 150 }),
      400,
      /^The error threshold must be a percentage from 0 to 100, not 150\.$/,
      0,
    );
    await expectRefused(
      await post({ ...ok, successThreshold: -1 }),
      400,
      /^The success threshold must be a percentage from 0 to 100, not -1\.$/,
      0,
    );
    await expectRefused(
      await post({ ...ok, groups: [{ count: 1, errorThreshold: 101 }, { rest: true }] }),
      400,
      /^Group 1's error threshold must be a percentage from 0 to 100, not 101\.$/,
      0,
    );
    await expectRefused(
      await post({ firmware: "sensor@2.0" }),
      400,
      /^Say which devices the rollout is for: "devices" \(a list of ids\), "tag" .* or "line"/,
      0,
    );
    await expectRefused(
      await post({ firmware: "sensor@2.0", devices: [] }),
      400,
      /^The device list is empty: name at least one device\.$/,
      0,
    );
    await expectRefused(await post({ firmware: "sensor@2.0", tag: " " }), 400, /^The tag is empty/, 0);
    await expectRefused(
      await post({ firmware: "sensor@2.0", line: "" }),
      400,
      /^The firmware line is empty/,
      0,
    );
    await expectRefused(
      await post({ ...ok, firmware: "lamp@1.0" }),
      400,
      /^No firmware "lamp" version "1\.0" is in the store/,
      0,
    );
    await expectRefused(
      await post({ ...ok, devices: ["h1", "nobody"] }),
      400,
      /^No device "nobody" has reported its state to this server/,
      0,
    );
    await expectRefused(await post({ ...ok, groups: "1, lots" }), 400, /"lots" is not a group/, 0);
    await expectRefused(
      await post({ ...ok, concurrency: 0 }),
      400,
      /"concurrency" must be a whole number from 1 to 1000, not 0/,
      0,
    );
    await expectRefused(await post({ ...ok, startAt: "next tuesday" }), 400, /"startAt" must be a time/, 0);

    // A device can be in only one active rollout: the refusal names the rollout that has it.
    const first = await post({ ...ok, name: "first wave" });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await expectRefused(
      await post({ firmware: "sensor@2.0", devices: ["h3", "h2"], startAt: IN_AN_HOUR() }),
      400,
      new RegExp(
        `^Refused: a device can be in only one active rollout, and h2 is in active rollout ${first.body.id} \\("first wave"\\)\\. .*abort ${first.body.id}`,
      ),
      1,
    );
    const aborted = await call(s, "POST", `/api/v1/rollouts/${first.body.id}/abort`);
    assert.equal(aborted.status, 200);
  });

  test("list, show, pause, resume and abort: the bridge's views and refusals", async () => {
    const created = await call(s, "POST", "/api/v1/rollouts", {
      json: {
        firmware: "sensor@2.0",
        devices: ["h4", "h5"],
        groups: [
          { count: 1, errorThreshold: 0 },
          { rest: true, successThreshold: 50, approve: true },
        ],
        concurrency: 3,
        timeout: 120,
        retries: 2,
        startAt: IN_AN_HOUR(),
        name: "later",
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    assert.match(id, /^r-[0-9a-f]{10}$/);
    assert.equal(created.body.state, "scheduled");
    assert.deepEqual(created.body.policy, {
      maxAttempts: 3,
      timeout: 120,
      concurrency: 3,
      allowDowngrade: false,
      onError: "pause",
    });
    assert.deepEqual(
      created.body.groups.map((g: Record<string, unknown>) => [
        g.spec,
        g.size,
        g.successThreshold,
        g.errorThreshold,
        g.approve,
        g.state,
      ]),
      [
        ["1", 1, 100, 0, false, "waiting"],
        ["rest", 1, 50, 20, true, "waiting"],
      ],
    );
    assert.deepEqual(created.body.counts, {
      total: 2,
      pending: 2,
      scheduled: 0,
      pushing: 0,
      verifying: 0,
      done: 0,
      failed: 0,
      overdue: 0,
      skipped: 0,
      cancelled: 0,
    });

    const list = await call(s, "GET", "/api/v1/rollouts");
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.map((r: { name: string; state: string }) => [r.name, r.state]),
      [
        ["later", "scheduled"],
        ["first wave", "aborted"],
      ],
    );
    const active = await call(s, "GET", "/api/v1/rollouts?active=true&limit=5");
    assert.deepEqual(
      active.body.map((r: { id: string }) => r.id),
      [id],
    );
    const badLimit = await call(s, "GET", "/api/v1/rollouts?limit=lots");
    assert.equal(badLimit.status, 400);
    assert.match(badLimit.body.error, /"limit" must be a whole number/);

    // By id or by name; the detail has the devices and the events, newest first.
    const shown = await call(s, "GET", "/api/v1/rollouts/later?events=10");
    assert.equal(shown.status, 200);
    assert.equal(shown.body.id, id);
    assert.deepEqual(
      shown.body.devices.map((d: { device: string; group: number; status: string }) => [
        d.device,
        d.group,
        d.status,
      ]),
      [
        ["h4", 0, "pending"],
        ["h5", 1, "pending"],
      ],
    );
    assert.equal(shown.body.events[0].kind, "created");
    assert.match(
      shown.body.events[0].message,
      /^Rollout of sensor 2\.0 to 2 devices created: groups of 1 \+ 1; starts /,
    );
    const unknown = await call(s, "GET", "/api/v1/rollouts/r-nosuch");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error, /There is no rollout "r-nosuch"\. GET \/api\/v1\/rollouts lists them\./);
    for (const action of ["pause", "resume", "abort"])
      assert.equal((await call(s, "POST", `/api/v1/rollouts/r-nosuch/${action}`)).status, 404, action);

    const paused = await call(s, "POST", `/api/v1/rollouts/${id}/pause`, {
      json: { reason: "storm tonight" },
    });
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.deepEqual(
      [paused.body.state, paused.body.pauseKind, paused.body.reason],
      ["paused", "manual", "Paused by hand: storm tonight"],
    );
    const twice = await call(s, "POST", `/api/v1/rollouts/${id}/pause`);
    assert.equal(twice.status, 400);
    assert.match(twice.body.error, /is already paused: Paused by hand: storm tonight/);
    const badReason = await call(s, "POST", `/api/v1/rollouts/${id}/abort`, { json: { reason: 5 } });
    assert.equal(badReason.status, 400);
    assert.match(badReason.body.error, /"reason" must be a string/);

    const resumed = await call(s, "POST", `/api/v1/rollouts/${id}/resume`);
    assert.equal(resumed.status, 200);
    assert.deepEqual([resumed.body.state, resumed.body.reason], ["scheduled", null]);
    const notPaused = await call(s, "POST", `/api/v1/rollouts/${id}/resume`);
    assert.equal(notPaused.status, 400);
    assert.match(notPaused.body.error, /is not paused \(it is scheduled\)/);

    const aborted = await call(s, "POST", `/api/v1/rollouts/${id}/abort`);
    assert.equal(aborted.status, 200);
    assert.deepEqual([aborted.body.state, aborted.body.reason], ["aborted", "Aborted by hand."]);
    assert.equal(aborted.body.counts.cancelled, 2);
    const again = await call(s, "POST", `/api/v1/rollouts/${id}/abort`);
    assert.equal(again.status, 400);
    assert.match(again.body.error, /has ended \(aborted: Aborted by hand\); there is nothing to abort/);
    const detail = await call(s, "GET", `/api/v1/rollouts/${id}`);
    assert.deepEqual(
      [...detail.body.events].reverse().map((e: { kind: string }) => e.kind),
      ["created", "paused", "resumed", "aborted"],
    );
  });

  test("with no page open, a rollout's or a job's change reads nothing", async () => {
    const events = s.server.http?.rolloutEvents;
    assert.ok(events);
    assert.equal(s.server.http?.stream.clientCount, 0);
    // Count the rollout reads the events make (the engine reads too, but no rollout runs here yet).
    const store = s.server.storage.rollouts;
    const { list } = store;
    let reads = 0;
    store.list = (...args) => {
      reads += 1;
      return list.apply(store, args);
    };
    try {
      events.changed("r-0123456789");
      events.jobChanged();
      // A page would have had the views looked at 200 ms later; with none, nothing is read.
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(reads, 0);
      // The count does see reads: with a page open, the same change is looked at.
      const stream = await openStream(s);
      try {
        events.jobChanged();
        await eventually(() => reads > 0, "the rollouts read for the open page");
      } finally {
        await stream.close();
      }
    } finally {
      store.list = list;
    }
  });

  test("a rollout created over HTTP runs to completion; the stream carries its views; the CLI shows the same numbers", async () => {
    const stream = await openStream(s);
    try {
      const created = await call(s, "POST", "/api/v1/rollouts", {
        json: { firmware: "sensor@2.0", line: "sensor", groups: "1, 40%, rest", timeout: 30, concurrency: 2 },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = created.body.id as string;
      assert.equal(created.body.state, "running");
      const events = s.server.http?.rolloutEvents;
      assert.ok(events);
      await eventually(() => events.watched === 1, "the running rollout watched");
      assert.deepEqual(
        created.body.groups.map((g: { spec: string; size: number }) => [g.spec, g.size]),
        [
          ["1", 1],
          ["40%", 2],
          ["rest", 2],
        ],
      );
      const end = await eventually(
        async () => {
          const r = await call(s, "GET", `/api/v1/rollouts/${id}?events=50`);
          return ["completed", "paused", "aborted"].includes(r.body.state) ? r.body : undefined;
        },
        "rollout ended",
        60_000,
      );
      assert.equal(end.state, "completed", end.reason);
      assert.equal(end.reason, "All 5 devices verified on sensor 2.0.");
      assert.deepEqual(
        end.groups.map((g: { state: string; counts: { done: number; total: number } }) => [
          g.state,
          g.counts.done,
          g.counts.total,
        ]),
        [
          ["finished", 1, 1],
          ["finished", 2, 2],
          ["finished", 2, 2],
        ],
      );
      for (const twin of twins) assert.deepEqual(twin.boots, [ID1, ID2], twin.options.id);

      // The stream's rollout events: views of this rollout as it moved, ending with the final one.
      const last = await eventually(() => {
        const mine = stream.events.filter((e) => e.event === "rollout" && e.data.id === id);
        const final = mine.at(-1);
        return final?.data.state === "completed" ? mine : undefined;
      }, "the completed rollout's event");
      const done = last.map((e) => e.data.counts.done as number);
      assert.ok(
        done.every((n, i) => i === 0 || n >= (done[i - 1] as number)),
        `done only grows: ${done.join(",")}`,
      );
      assert.ok(new Set(done).size >= 3, `the page saw the groups fill: ${done.join(",")}`);
      const { devices: _d, events: _e, ...view } = end;
      assert.deepEqual(last.at(-1)?.data, view);
      // Only changes are sent: no two events in a row carry the same view.
      for (let i = 1; i < last.length; i++)
        assert.notDeepEqual(last[i]?.data, last[i - 1]?.data, `event ${i} repeats the one before`);

      // Nothing is kept of rollouts that ended with every device finished.
      await eventually(() => events.watched === 0, "nothing watched once the rollout ended");

      // One source of truth: `mpota rollout show --json` prints what the API answers.
      const viaHttp = await call(s, "GET", `/api/v1/rollouts/${id}?events=20`);
      const viaCli = await mpotaJson(["show", id, "--events", "20", "--mqtt", s.url]);
      assert.deepEqual(viaCli, viaHttp.body);
      const listCli = await mpotaJson(["list", "--mqtt", s.url]);
      assert.deepEqual(listCli, (await call(s, "GET", "/api/v1/rollouts")).body);
    } finally {
      await stream.close();
    }
  });
});
