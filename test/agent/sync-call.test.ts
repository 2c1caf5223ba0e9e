import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import { serveHostCalls } from "../../src/agent-host/sync-call.ts";
import type { HostCall, HostReply } from "../../src/agent-host/worker-protocol.ts";

// The device worker blocks in callHostSync until the main thread answers. The main thread
// answers in three steps (post the reply, raise the flag, notify); under load it can be
// preempted between them, so the notify (or the raise) of one call can land while the worker
// already waits for the next call's answer. A simulated device whose call then failed crashed
// for good (the dashboard test's sleeper stopped cycling). The host here notifies early on every
// call, and raises the flag early on every other one, as that late notify and raise do; every
// call must still get its own answer.

const CALLS = 40;
const syncCall = fileURLToPath(new URL("../../src/agent-host/sync-call.ts", import.meta.url));

/** The worker: CALLS blocking host calls in a row; posts the answers, or the error that stopped it. */
const WORKER = `
import { parentPort, workerData } from "node:worker_threads";
import { callHostSync } from ${JSON.stringify(syncCall)};
const { port, flag, calls } = workerData;
const answers = [];
try {
  for (let i = 0; i < calls; i++) answers.push(callHostSync(port, flag, { op: "adc", channel: i }));
  parentPort.postMessage({ answers });
} catch (error) {
  parentPort.postMessage({ answers, error: String(error) });
}
`;

async function bundle(source: string): Promise<string> {
  const esbuild = (await import("esbuild")) as {
    buildSync(options: object): { outputFiles: Array<{ text: string }> };
  };
  return esbuild.buildSync({
    stdin: { contents: source, resolveDir: import.meta.dirname, loader: "js" },
    bundle: true,
    write: false,
    format: "esm",
    platform: "node",
    target: "node20",
  }).outputFiles[0]?.text as string;
}

test("a worker's blocking host calls each get their own answer, also when a notify comes early", async () => {
  const { port1, port2 } = new MessageChannel();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  serveHostCalls(port1, flag, async (request: HostCall): Promise<HostReply> => {
    const channel = request.op === "adc" ? request.channel : -1;
    // A raise and a notify that are not this call's (the previous call's, late), while the
    // worker waits; then the answer a few milliseconds later, as a socket read answers.
    if (channel % 2 === 1) Atomics.store(flag, 0, 1);
    for (let i = 0; i < 5; i++) {
      Atomics.notify(flag, 0);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return { value: channel * 10 };
  });
  const worker = new Worker(await bundle(WORKER), {
    eval: true,
    workerData: { port: port2, flag, calls: CALLS },
    transferList: [port2],
  });
  try {
    const [result] = (await once(worker, "message")) as [{ answers: HostReply[]; error?: string }];
    assert.equal(result.error, undefined, `call ${result.answers.length} failed`);
    assert.deepEqual(
      result.answers,
      Array.from({ length: CALLS }, (_, i) => ({ value: i * 10 })),
    );
  } finally {
    port1.close();
    await worker.terminate();
  }
});
