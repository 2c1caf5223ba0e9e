// Worker threads do not inherit tsx from the parent on every Node version:
// register it here, then load the TypeScript worker named in workerData.

import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
