// `mpota ARGS...` from the sources (no build needed), as a real process:
// node --import tsx mpota-source.ts ARGS...
import { main } from "../../../src/cli/main.ts";

process.exitCode = await main(process.argv);
