#!/usr/bin/env node
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
