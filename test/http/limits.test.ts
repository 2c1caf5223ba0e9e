import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { ServeOptions } from "../../src/cli/serve-options.ts";
import { serverSettings } from "../../src/cli/serve-settings.ts";
import { UsageError } from "../../src/errors.ts";
import { DEFAULT_HTTP_LIMITS } from "../../src/server/http/http-limits.ts";
import { launchChromium, SKIP } from "../dashboard/support.ts";
import { tempDir } from "../server/support/test-server.ts";
import { call, type HttpTestServer, startHttpServer } from "./support.ts";

// The HTTP side of issue 16 under abuse: wrong tokens, stalled bodies,
// slow headers, too many event streams, large bodies. Every check is on
// what a client receives and what the server logs.

/** Sends `text` on a raw TCP connection and returns everything the server writes until it closes (or `waitMs`). */
function raw(
  s: HttpTestServer,
  text: string,
  waitMs: number,
): Promise<{ received: string; closed: boolean; ms: number }> {
  const url = new URL(s.base);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(text));
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString("utf8");
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received, closed: false, ms: Date.now() - started });
    }, waitMs);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ received, closed: true, ms: Date.now() - started });
    });
    socket.on("error", () => undefined);
  });
}

describe("HTTP limits: wrong tokens", () => {
  const data = tempDir("mpota-http-limits-");
  let s: HttpTestServer;

  before(async () => {
    s = await startHttpServer(data.dir, {
      limits: { credentials: { maxFailures: 10, windowMs: 60_000, maxAddresses: 100 } },
    });
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  test("300 wrong Bearer tokens: 401 up to the limit, then 429 with Retry-After; the right token passes meanwhile; logged once", async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 300; i++) {
      last = await call(s, "GET", "/api/v1/devices", { token: `mpota_guess-${i}-xxxxxxxxxxxxxxxx` });
      statuses.push(last.status);
      // The right token from the same address, in the middle of the flood.
      if (i === 150) {
        const right = await call(s, "GET", "/api/v1/devices");
        assert.equal(right.status, 200, "the right token is never locked out");
        const login = await call(s, "POST", "/api/v1/login", { json: { token: s.token }, token: false });
        assert.equal(login.status, 200, "the login form takes the right token too");
      }
    }
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
    assert.deepEqual(statuses.slice(10), Array(290).fill(429));
    assert.ok(last);
    assert.equal(last.status, 429);
    assert.match(
      last.body.error,
      /Too many wrong admin tokens from this address \(10 in 60 s\); wrong ones are refused for \d+ s more/,
    );
    assert.match(last.body.error, /The right admin token is still accepted/);
    const retry = Number(last.headers.get("retry-after"));
    assert.ok(retry > 0 && retry <= 60, `Retry-After ${retry}`);
    assert.equal(last.body.retryAfter, retry);
    // A wrong login from the same address is limited as well (one count for both).
    const login = await call(s, "POST", "/api/v1/login", { json: { token: "guess" }, token: false });
    assert.equal(login.status, 429);
    assert.match(login.body.error, /Too many failed logins/);
    const right = await call(s, "GET", "/api/v1/devices");
    assert.equal(right.status, 200);
    // One line for the 429s and one for the 401s of this minute, not 300.
    const refused = s.logs.find("HTTP request refused (logged once per source and status per minute)");
    assert.deepEqual(
      refused.map((l) => l.status).sort(),
      [401, 429],
      JSON.stringify(refused.map((l) => [l.status, l.reason])),
    );
    assert.equal(s.logs.lines.filter((l) => l.level >= 50).length, 0);
  });
});

describe("HTTP limits: slow clients, event streams, bodies", () => {
  const data = tempDir("mpota-http-limits-");
  let s: HttpTestServer;

  before(async () => {
    s = await startHttpServer(data.dir, {
      limits: { bodyIdleMs: 400, headersTimeoutMs: 600, eventClients: 2, jsonBodyBytes: 1024 },
    });
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  test("a body shorter than its Content-Length: 408 with a JSON error, the connection closed, one info line without a stack", async () => {
    const body = '{"device":"k';
    const r = await raw(
      s,
      `POST /api/v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n${body}`,
      5000,
    );
    assert.ok(r.closed, `the server closed the connection (${r.ms} ms): ${r.received}`);
    assert.ok(r.ms < 3000, `cut off after ${r.ms} ms`);
    assert.match(r.received, /^HTTP\/1\.1 408 /);
    assert.match(r.received, /connection: close/i);
    const json = JSON.parse(r.received.slice(r.received.indexOf("\r\n\r\n") + 4));
    assert.match(
      json.error,
      /The request body stopped arriving: 12 of 100 bytes came, then nothing for 0.4 s/,
    );
    assert.equal(json.status, 408);
    const lines = s.logs.find("HTTP request refused (logged once per source and status per minute)", {
      status: 408,
    });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.level, 30);
    assert.equal(s.logs.lines.filter((l) => l.level >= 50).length, 0);
    assert.ok(!JSON.stringify(s.logs.lines).includes("    at "), "no stack in the log");
  });

  test("a client that goes away mid-body: one info line, no stack, no error", async () => {
    const url = new URL(s.base);
    await new Promise<void>((resolve) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(
          `POST /api/v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
    });
    await new Promise((r) => setTimeout(r, 300));
    const gone = s.logs.find("HTTP client went away mid-request");
    assert.equal(gone.length, 1);
    assert.equal(gone[0]?.level, 30);
    assert.equal(s.logs.lines.filter((l) => l.level >= 50).length, 0);
  });

  test("headers that never end: 408 and closed within the headers timeout", async () => {
    const r = await raw(s, "GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nX-Slow: a", 5000);
    assert.ok(r.closed, "closed");
    assert.ok(r.ms < 3000, `cut off after ${r.ms} ms`);
    assert.match(r.received, /^HTTP\/1\.1 408 /);
  });

  test("event streams over the limit are refused with 503 and a JSON error; a freed place opens again", async () => {
    const open = async () => {
      const controller = new AbortController();
      const response = await fetch(`${s.base}/api/v1/events`, {
        headers: { authorization: `Bearer ${s.token}` },
        signal: controller.signal,
      });
      return { response, close: () => controller.abort() };
    };
    const a = await open();
    const b = await open();
    assert.equal(a.response.status, 200);
    assert.equal(b.response.status, 200);
    const c = await open();
    assert.equal(c.response.status, 503);
    assert.equal(c.response.headers.get("retry-after"), "30");
    const body = (await c.response.json()) as { error: string; limit: number };
    assert.match(body.error, /2 event streams open, its limit \(--http-max-event-clients\)/);
    assert.equal(body.limit, 2);
    assert.equal(s.server.http?.stream.clientCount, 2, "the open streams were kept");
    if (!SKIP) {
      // The dashboard opened now says why it has no live updates, in the server's words.
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        await page.goto(s.base);
        await page.getByLabel("Admin token").fill(s.token);
        await page.getByRole("button", { name: "Log in" }).click();
        await page.locator("header .live-closed").waitFor({ timeout: 15_000 });
        await page
          .getByRole("alert")
          .filter({ hasText: "2 event streams open, its limit (--http-max-event-clients)" })
          .waitFor({ timeout: 15_000 });
      } finally {
        await browser.close();
      }
      assert.equal(s.server.http?.stream.clientCount, 2);
    }
    a.close();
    await new Promise((r) => setTimeout(r, 200));
    const d = await open();
    assert.equal(d.response.status, 200);
    b.close();
    d.close();
  });

  test("a JSON body over the named limit: 413 with the limit", async () => {
    const r = await call(s, "POST", "/api/v1/update", { json: { device: "x".repeat(2000), firmware: "a" } });
    assert.equal(r.status, 413);
    assert.equal(r.body.limit, 1024);
    assert.match(r.body.error, /larger than 1,024 bytes/);
  });
});

describe("HTTP limits on mpota serve", () => {
  const options = (extra: Partial<ServeOptions>): ServeOptions => ({
    data: "x",
    mqttHost: "127.0.0.1",
    mqttPort: 0,
    base: "mpota",
    block: 256,
    maxAttempts: 5,
    maxPushes: 8,
    logLevel: "warn",
    ...extra,
  });

  test("the options become the named limits; out of range is a usage error that names the option", () => {
    const { httpLimits } = serverSettings(
      options({
        httpMaxEventClients: 5,
        httpMaxBody: 4096,
        httpPageMax: 50,
        httpBodyTimeout: 3,
        httpTokenFailures: 20,
      }),
    );
    assert.deepEqual(httpLimits, {
      eventClients: 5,
      jsonBodyBytes: 4096,
      pageMax: 50,
      bodyIdleMs: 3000,
      credentials: { ...DEFAULT_HTTP_LIMITS.credentials, maxFailures: 20 },
    });
    assert.deepEqual(serverSettings(options({})).httpLimits, {});
    for (const [extra, text] of [
      [{ httpMaxEventClients: 0 }, /--http-max-event-clients must be between 1 and 10000/],
      [{ httpMaxBody: 10 }, /--http-max-body must be between 1024/],
      [{ httpPageMax: 0 }, /--http-page-max must be between 1 and 100000/],
      [{ httpBodyTimeout: 0 }, /--http-body-timeout must be between 1 and 3600/],
      [{ httpTokenFailures: 0 }, /--http-token-failures must be between 1/],
    ] as const) {
      assert.throws(
        () => serverSettings(options(extra)),
        (e: unknown) => {
          assert.ok(e instanceof UsageError);
          assert.match(e.message, text);
          return true;
        },
      );
    }
  });
});
