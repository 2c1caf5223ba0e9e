import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

/** The dashboard's folder: src/dashboard, from this module in src/server/http/ or in the build's dist/server/http/. */
export function dashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, "../../dashboard"), resolve(here, "../../../src/dashboard")];
  for (const dir of candidates) if (existsSync(join(dir, "index.html"))) return dir;
  return candidates[0] as string;
}

/** The browser libraries, served from node_modules under /vendor/ (no CDN: the server may be offline). */
export function vendorFiles(): Map<string, string> {
  const require = createRequire(import.meta.url);
  const files = new Map<string, string>();
  const add = (url: string, specifier: string) => {
    try {
      files.set(url, require.resolve(specifier));
    } catch {
      // Reported as 404 when asked for; the page says the library is missing.
    }
  };
  add("/vendor/preact.mjs", "preact");
  add("/vendor/preact-hooks.mjs", "preact/hooks");
  const htm = (() => {
    try {
      return join(dirname(require.resolve("htm")), "htm.module.js");
    } catch {
      return undefined;
    }
  })();
  if (htm) files.set("/vendor/htm.mjs", htm);
  return files;
}

/**
 * Serves the dashboard (a fixed list of files, nothing else from disk) and
 * its libraries. Files are read on each request: small, and a page reload
 * shows an edit without a server restart.
 */
export class StaticFiles {
  private readonly files = new Map<string, string>();

  constructor(dir = dashboardDir()) {
    for (const name of [
      "index.html",
      "app.js",
      "api.js",
      "audit.js",
      "format.js",
      "rollouts.js",
      "trust.js",
      "style.css",
    ])
      this.files.set(`/${name}`, join(dir, name));
    this.files.set("/", join(dir, "index.html"));
    for (const [url, path] of vendorFiles()) this.files.set(url, path);
  }

  has(path: string): boolean {
    return this.files.has(path);
  }

  async serve(path: string, response: ServerResponse, head: boolean): Promise<void> {
    const file = this.files.get(path);
    if (!file) throw new Error(`no static file ${path}`);
    const body = await readFile(file);
    response.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "content-length": body.length,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "content-security-policy":
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
      "referrer-policy": "same-origin",
    });
    response.end(head ? undefined : body);
  }
}
