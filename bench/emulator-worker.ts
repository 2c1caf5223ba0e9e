// Runs one emulated device in its own thread, on real loopback UDP and the
// system clock, so the sender in the main thread shares no event loop with it.
import { parentPort, workerData } from "node:worker_threads";
import { EmulatedDevice } from "../src/emulator/device.ts";
import { LINK_PROFILES, withMaxDatagram } from "../src/net/impairment.ts";
import { NodeUdpNetwork } from "../src/net/node-udp.ts";
import { seededRandom } from "../src/net/random.ts";
import { parseModulusHex } from "../src/protocol/rsa-key.ts";

interface Setup {
  address: string;
  modulusHex: string;
  link: keyof typeof LINK_PROFILES;
  maxDatagramBytes?: number;
  baudRate: number;
  seed: number;
}

const setup = workerData as Setup;
const base = LINK_PROFILES[setup.link];
const link = setup.maxDatagramBytes ? withMaxDatagram(base, setup.maxDatagramBytes) : base;
const device = new EmulatedDevice({
  network: new NodeUdpNetwork(),
  address: setup.address,
  port: 8266,
  key: parseModulusHex(setup.modulusHex),
  // gpio_mask 0: the bootloader enters OTA mode on every boot.
  settings: { gpioMask: 0, baudRate: setup.baudRate },
  link,
  random: seededRandom(setup.seed),
});
const port = parentPort;
if (!port) throw new Error("bench/emulator-worker.ts runs as a worker thread");
device.events.on("otaFinished", () => {
  port.postMessage({ type: "finished", stats: device.stats, link: device.linkStats });
});
await device.powerOn();
await device.waitForState("ota");
port.postMessage({ type: "ready", port: device.endpoint.port });
port.on("message", (m: { type: string }) => {
  if (m.type === "stats") port.postMessage({ type: "stats", stats: device.stats, link: device.linkStats });
  if (m.type === "close") void device.close().then(() => process.exit(0));
});
