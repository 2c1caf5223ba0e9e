import { existsSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The types the dashboard may serve; a file of any other kind is not served. */
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** The dashboard's folder: src/dashboard in the source tree, and from a build in dist/ as well. */
export function dashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/server/http -> src/dashboard; dist/server/http -> src/dashboard (tsc does not copy it).
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
 * Serves the dashboard's folder (any file in it of a known type, so a new
 * page module needs no edit here) and its libraries. Nothing outside the
 * folder: no `..`, no hidden files, no link that leads out. Files are read on
 * each request: small, and a page reload shows an edit without a restart.
 */
export class StaticFiles {
  private readonly vendor: Map<string, string>;
  private root: string | undefined;

  constructor(private readonly dir = dashboardDir()) {
    this.vendor = vendorFiles();
  }

  /** The file a URL path names, or undefined when there is none to serve. */
  async find(urlPath: string): Promise<string | undefined> {
    const vendored = this.vendor.get(urlPath);
    if (vendored) return vendored;
    const path = urlPath === "/" ? "/index.html" : urlPath;
    let name: string;
    try {
      name = decodeURIComponent(path);
    } catch {
      return undefined;
    }
    const parts = name.split("/").slice(1);
    // Plain names only: no "..", ".", hidden files, empty parts or backslashes.
    if (parts.some((p) => p === "" || p.startsWith(".") || p.includes("\\") || p.includes("\0")))
      return undefined;
    if (!(extname(name).toLowerCase() in TYPES)) return undefined;
    this.root ??= await realpath(this.dir);
    try {
      const file = await realpath(join(this.root, ...parts));
      if (!file.startsWith(this.root + sep)) return undefined;
      return (await stat(file)).isFile() ? file : undefined;
    } catch {
      return undefined;
    }
  }

  async serve(file: string, response: ServerResponse, head: boolean): Promise<void> {
    const body = await readFile(file);
    response.writeHead(200, {
      "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
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
