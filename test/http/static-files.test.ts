import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StaticFiles } from "../../src/server/http/static-files.ts";
import { tempDir } from "../server/support/test-server.ts";

// The dashboard's folder is served as it is: a file added there is served
// without a server edit, and nothing outside it is reachable.
describe("static files of the dashboard", () => {
  const work = tempDir("mpota-static-");
  const dir = join(work.dir, "dashboard");
  let server: Server;
  let base: string;

  before(async () => {
    mkdirSync(join(dir, "pages"), { recursive: true });
    writeFileSync(join(dir, "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(join(dir, "pages", "new-page.js"), "export const x = 1;\n");
    writeFileSync(join(dir, "style.css"), "body{}");
    writeFileSync(join(dir, ".secret.js"), "hidden");
    writeFileSync(join(dir, "notes.txt"), "no type");
    writeFileSync(join(work.dir, "outside.js"), "outside");
    symlinkSync(join(work.dir, "outside.js"), join(dir, "link-out.js"));
    const files = new StaticFiles(dir);
    server = createServer(async (request, response) => {
      const url = new URL(request.url ?? "/", "http://x");
      const file = await files.find(url.pathname);
      if (file) await files.serve(file, response, request.method === "HEAD");
      else {
        response.writeHead(404);
        response.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    work.remove();
  });

  test("any file of the folder, also in a subfolder, with its content type", async () => {
    const cases: Array<[string, RegExp, string]> = [
      ["/", /text\/html/, "<!doctype html><title>t</title>"],
      ["/index.html", /text\/html/, "<!doctype html><title>t</title>"],
      ["/pages/new-page.js", /text\/javascript/, "export const x = 1;\n"],
      ["/style.css", /text\/css/, "body{}"],
      ["/vendor/preact.mjs", /text\/javascript/, ""],
    ];
    for (const [path, type, text] of cases) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type") ?? "", type, path);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      const body = await r.text();
      if (text) assert.equal(body, text, path);
      else assert.ok(body.length > 1000, `${path} is the library`);
    }
  });

  test("nothing outside the folder, no hidden file, no unknown type", async () => {
    for (const path of [
      "/%2e%2e/outside.js",
      "/pages/%2e%2e%2f%2e%2e%2foutside.js",
      "/pages%2f..%2f..%2foutside.js",
      "/..%5coutside.js",
      "/link-out.js",
      "/.secret.js",
      "/notes.txt",
      "/pages",
      "/pages/",
      "/missing.js",
      "/%E0%A4%A.js",
    ]) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 404, path);
      await r.arrayBuffer();
    }
  });
});
