import { createHash } from "node:crypto";
import type { AppKey } from "../../src/apps/app-key.ts";
import type { AppManifestFields, SignedAppManifest } from "../../src/apps/app-manifest.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import type { BridgeClient } from "../../src/server/bridge/bridge-client.ts";

export const sha256Hex = (b: Uint8Array | string): string => createHash("sha256").update(b).digest("hex");

/**
 * An app of 20 files: main.py and m01..m19 of `fileBytes` each (1 KiB by
 * default). `changed` gives that module the version's text; `main` replaces
 * main.py (which prints m01's and m07's versions).
 */
export function twentyFiles(
  version: string,
  options: { changed?: number; main?: string; fileBytes?: number } = {},
): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  files.set("main.py", Buffer.from(options.main ?? 'import m01, m07\nprint("thermostat", m01.V, m07.V)\n'));
  for (let i = 1; i < 20; i++) {
    const head = `V = "${i === options.changed ? version : "1.0.0"}"\nI = ${i}\nDATA = "`;
    const size = options.fileBytes ?? 1000;
    files.set(
      `m${String(i).padStart(2, "0")}.py`,
      Buffer.from(`${head}${"x".repeat(size - head.length - 2)}"\n`),
    );
  }
  return files;
}

/** The manifest fields of these files (no .mpy), for esp32 and esp8266 unless `boards` says. */
export function appFields(
  name: string,
  version: string,
  files: ReadonlyMap<string, Uint8Array>,
  boards: string[] = ["esp32", "esp8266"],
): AppManifestFields {
  return {
    name,
    version,
    boards,
    mpy: undefined,
    files: [...files].map(([path, bytes]) => ({ path, size: bytes.length, sha256: sha256Hex(bytes) })),
  };
}

/** Signs the release with `key` and adds it, with all its files, through the bridge's app/add. */
export async function addAppRelease(
  bridge: BridgeClient,
  key: AppKey,
  name: string,
  version: string,
  files: ReadonlyMap<string, Uint8Array>,
  boards?: string[],
): Promise<SignedAppManifest> {
  const m = signAppManifest(appFields(name, version, files, boards), key.privateKey);
  await bridge.request("app/add", {
    manifest: m.bytes.toString("base64"),
    files: Object.fromEntries(
      [...files.values()].map((b) => [sha256Hex(b), Buffer.from(b).toString("base64")]),
    ),
  });
  return m;
}
