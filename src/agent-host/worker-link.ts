import { fileURLToPath } from "node:url";
import { MessageChannel, type MessagePort, type TransferListItem, Worker } from "node:worker_threads";
import { type MicroPythonRelease, micropythonUrl } from "./micropython-release.ts";
import { serveHostCalls } from "./sync-call.ts";
import type { BootRequest, HostCall, HostReply, WorkerEvent } from "./worker-protocol.ts";

const here = import.meta.url;
const fromSource = here.endsWith(".ts");
const workerUrl = new URL(`./device-worker.${fromSource ? "ts" : "js"}`, here);
const ESBUILD: string = "esbuild";

let bundled: string | undefined;

/**
 * Running from TypeScript sources (tests, tsx), a worker does not inherit the
 * TS loader. Bundle the worker once per process with esbuild (tsx's own
 * dependency: a worker then starts in ~150 ms), else register tsx in each
 * worker (~400 ms). Built code runs device-worker.js directly.
 */
async function spawn(workerData: unknown, transferList: TransferListItem[]): Promise<Worker> {
  if (!fromSource) return new Worker(workerUrl, { workerData, transferList });
  if (bundled === undefined) {
    try {
      const esbuild = (await import(ESBUILD)) as {
        buildSync(options: object): { outputFiles: Array<{ text: string }> };
      };
      const out = esbuild.buildSync({
        entryPoints: [fileURLToPath(workerUrl)],
        bundle: true,
        write: false,
        format: "esm",
        platform: "node",
        target: "node20",
        external: ["@micropython/*"],
      });
      bundled = out.outputFiles[0]?.text ?? "";
    } catch {
      const api = import.meta.resolve("tsx/esm/api");
      bundled = `const { register } = await import(${JSON.stringify(api)});
register();
await import(${JSON.stringify(workerUrl.href)});`;
    }
  }
  return new Worker(bundled, { eval: true, workerData, transferList });
}

/**
 * The main thread's end of one device worker: boots runs in it, answers its
 * synchronous host calls, and stops it at once on power-off.
 */
export class WorkerLink {
  private inFlight = false;
  private stopped = false;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly flag: Int32Array,
  ) {}

  static async start(
    handler: (request: HostCall) => Promise<HostReply>,
    onEvent: (event: WorkerEvent) => void,
    onFailure: (error: Error) => void,
    release: MicroPythonRelease,
  ): Promise<WorkerLink> {
    const micropython = micropythonUrl(release);
    const { port1, port2 } = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const worker = await spawn({ port: port2, flag, micropython }, [port2]);
    const link = new WorkerLink(worker, port1, flag);
    serveHostCalls(port1, flag, async (request) => {
      link.inFlight = true;
      try {
        return link.stopped ? { halt: true } : await handler(request);
      } finally {
        link.inFlight = false;
      }
    });
    return new Promise((resolve, reject) => {
      worker.on("message", (event: WorkerEvent) => {
        if (event.type === "ready") resolve(link);
        else if (!link.stopped) onEvent(event);
      });
      worker.on("error", (error) => {
        reject(error);
        if (!link.stopped) onFailure(error);
      });
      worker.on("exit", (code) => {
        if (!link.stopped) onFailure(new Error(`the device worker exited with code ${code}`));
        link.stopped = true;
        reject(new Error("the device worker exited before it was ready"));
      });
    });
  }

  get alive(): boolean {
    return !this.stopped;
  }

  boot(request: BootRequest): void {
    this.worker.postMessage(request);
  }

  /** Stops the interpreter wherever it is, like pulling the power. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.inFlight) {
      // Wake the worker from its blocking call so it can be terminated.
      this.port.postMessage({ halt: true });
      Atomics.store(this.flag, 0, 1);
      Atomics.notify(this.flag, 0);
    }
    await this.worker.terminate();
    // The worker's end went with it; ours would otherwise keep the process alive.
    this.port.close();
  }
}
