import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ServeOptions } from "../../src/cli/serve-options.ts";
import { serverSettings } from "../../src/cli/serve-settings.ts";
import { UsageError } from "../../src/errors.ts";

const options = (extra: Partial<ServeOptions>): ServeOptions => ({
  data: "x",
  base: "mpota",
  block: 256,
  maxAttempts: 5,
  maxPushes: 8,
  logLevel: "warn",
  http: true,
  ...extra,
});

describe("mpota serve --device-url", () => {
  test("an http(s) base URL is taken without its trailing slash; none leaves the default to the server", () => {
    assert.equal(
      serverSettings(options({ deviceUrl: "http://192.168.1.10:8080/" })).deviceUrl,
      "http://192.168.1.10:8080",
    );
    assert.equal(
      serverSettings(options({ deviceUrl: "https://ota.example.org/mpota" })).deviceUrl,
      "https://ota.example.org/mpota",
    );
    assert.equal(serverSettings(options({})).deviceUrl, undefined);
  });

  test("a URL a signed pull command cannot carry, or one without an HTTP listener, is a usage error that says why", () => {
    for (const bad of [
      "ftp://host/x",
      "192.168.1.10:8080",
      "http://host/a b",
      "http://host/a,b",
      "http://host/?x=1",
      "http://host/#top",
      `http://${"a".repeat(200)}`,
    ]) {
      assert.throws(
        () => serverSettings(options({ deviceUrl: bad })),
        (e: unknown) =>
          e instanceof UsageError &&
          /^--device-url ".*" is not usable: give an http:\/\/ or https:\/\/ URL without spaces, commas, query or fragment, short enough that \/device\/firmware\/<fw> fits 240 characters after the scheme/.test(
            e.message,
          ),
        bad,
      );
    }
    assert.throws(
      () => serverSettings(options({ http: false, deviceUrl: "http://192.168.1.10:8080" })),
      /--device-url names where devices reach the HTTP API, but --no-http turns that off/,
    );
  });
});
