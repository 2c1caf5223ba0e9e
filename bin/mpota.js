#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=100
// The flags trade a little CPU for much less memory in a long-running server
// that holds many small objects per connected device: V8's young generation
// stays small (2 MiB semi-spaces instead of up to 16), and the old generation
// may grow to twice what was live after the last collection (instead of up to
// four times) before the next one. A 10,000-device registry then stays near
// 240 MB instead of 260-320. Whoever starts this file with `node` directly
// passes the flags of the first line (scripts/start.mjs and the fleet
// benchmark do).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    "mpota is not built yet: run `npm install` (or `npm run build`) in the mpota folder first.\n",
  );
  process.exit(70);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
