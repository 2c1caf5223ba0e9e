#!/usr/bin/env -S node --max-semi-space-size=2
// The flag keeps V8's young generation small (2 MiB semi-spaces instead of up
// to 16): the server holds many small long-lived objects per connected device,
// and a 10,000-device registry then needs about 50 MB less memory. Whoever
// starts this file with `node` directly passes the flags of the first line
// (scripts/start.mjs and the fleet benchmark do).
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
