import type { RolloutDetail } from "../../src/server/api/rollout-api.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import type { ServerOptions } from "../../src/server/server-options.ts";
import type { RolloutState } from "../../src/server/storage/rollout-store.ts";
import { startAedesBroker, type TestBroker } from "../server/support/brokers.ts";
import { DeviceTwin, type TwinOptions } from "../server/support/device-twin.ts";
import { startTestServer, type TestServer, tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

export const V1 = buildMicroPythonImage({ size: 24000, seed: 61 });
export const V2 = buildMicroPythonImage({ size: 26000, seed: 62 });
export const V3 = buildMicroPythonImage({ size: 25000, seed: 63 });
export const ID1 = imageIdentity(V1);
export const ID2 = imageIdentity(V2);
export const ID3 = imageIdentity(V3);

export const b64 = (image: Uint8Array) => Buffer.from(image).toString("base64");

/** A server with its embedded broker, the three test firmware in its store, and device twins. */
export class Rig {
  readonly twins = new Map<string, DeviceTwin>();

  private constructor(
    public s: TestServer,
    public bridge: BridgeClient,
    readonly url: string,
    readonly dir: string,
    private readonly options: Partial<ServerOptions>,
    private readonly broker: TestBroker | undefined,
    private readonly remove: () => void,
  ) {}

  /** With `external`, the broker outlives the server (for restarts). */
  static async start(options: Partial<ServerOptions> = {}, external = false): Promise<Rig> {
    const t = tempDir("mpota-rollout-");
    const broker = external ? await startAedesBroker() : undefined;
    const serverOptions: Partial<ServerOptions> = {
      ...(broker ? { broker: { kind: "external", connection: broker.connection } } : {}),
      ...options,
    };
    const s = await startTestServer(t.dir, serverOptions);
    const url = broker ? broker.connection.url : s.url;
    const bridge = await BridgeClient.connect({ connection: { url } });
    const rig = new Rig(s, bridge, url, t.dir, serverOptions, broker, t.remove);
    const firmware = await bridge.request("firmware/list", {});
    if (firmware.length === 0) {
      await bridge.request("firmware/add", { image: b64(V1), name: "sensor", version: "1.0" });
      await bridge.request("firmware/add", { image: b64(V2), name: "sensor", version: "2.0" });
      await bridge.request("firmware/add", { image: b64(V3), name: "sensor", version: "1.5" });
    }
    return rig;
  }

  /** Starts device twins (always on unless `sleepMs`) running `image`, and waits until the server knows them. */
  async devices(ids: string[], options: Partial<TwinOptions> = {}): Promise<DeviceTwin[]> {
    const out: DeviceTwin[] = [];
    for (const id of ids) {
      const twin = new DeviceTwin({ url: this.url, id, image: V1, ...options });
      this.twins.set(id, twin);
      await twin.start();
      out.push(twin);
    }
    const fw = imageIdentity(options.image ?? V1);
    await eventually(
      async () => {
        const known = await this.bridge.request("devices", {});
        return ids.every((id) => known.some((d) => d.id === id && d.fw === fw));
      },
      `${ids.join(", ")} known`,
    );
    return out;
  }

  show(id: string): Promise<RolloutDetail> {
    return this.bridge.request("rollout/show", { id, events: 1000 });
  }

  /** Waits until the rollout is in one of `states`. */
  until(id: string, states: RolloutState[], timeoutMs = 30_000): Promise<RolloutDetail> {
    return eventually(
      async () => {
        const r = await this.show(id);
        return states.includes(r.state) ? r : undefined;
      },
      `rollout ${id} ${states.join(" or ")}`,
      timeoutMs,
    );
  }

  /** Stops the server and starts it again on the same data (needs the external broker). */
  async restartServer(between: () => Promise<void> = async () => undefined): Promise<void> {
    await this.bridge.close();
    await this.s.stop();
    await between();
    this.s = await startTestServer(this.dir, this.options);
    this.bridge = await BridgeClient.connect({ connection: { url: this.url } });
  }

  async close(): Promise<void> {
    for (const twin of this.twins.values()) await twin.close();
    this.twins.clear();
    await this.bridge.close().catch(() => undefined);
    await this.s.stop();
    await this.broker?.stop();
    this.remove();
  }
}

/** Event kinds in order (oldest first), without the per-device ones. */
export function rolloutKinds(r: RolloutDetail): string[] {
  return [...r.events]
    .reverse()
    .map((e) => e.kind)
    .filter((k) => !k.startsWith("device-"));
}
