// Child process for the crash test: writes device states as fast as it can until it is killed.
import { openSqliteStorage } from "../../../src/server/storage/sqlite-storage.ts";

const storage = await openSqliteStorage(process.argv[2] as string);
let i = 0;
for (;;) {
  const id = `dev${i % 7}`;
  await storage.devices.recordState({
    id,
    state: { v: 1, fw: (i % 16).toString(16).repeat(32), ip: "10.0.0.1", mem: i },
    at: 1000 + i,
    digest: `d${i}`,
    nextWakeAt: null,
    historyLimit: 5,
  });
  if (i === 200) process.stdout.write("writing\n");
  i++;
}
