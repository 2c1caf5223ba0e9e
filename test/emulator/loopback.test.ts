import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EmulatedDevice } from "../../src/emulator/device.ts";
import { RTC_MAGIC } from "../../src/firmware/rtc-memory.ts";
import { systemClock } from "../../src/net/clock.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { referenceKey, stopAndWait } from "./test-sender.ts";

describe("emulated device on real loopback UDP", () => {
  it("receives a small image from a stop-and-wait sender and boots it", async () => {
    const network = new NodeUdpNetwork();
    const device = new EmulatedDevice({
      network,
      address: "127.0.0.1",
      port: 0,
      clock: systemClock,
      key: referenceKey,
      // Faster logging and boot keep the test short; the protocol is unchanged.
      timing: { baudRate: 921600, otaBootMs: 50, appBootMs: 10 },
      settings: { gpioWaitMs: 100 },
    });
    const sender = await network.bind({ address: "127.0.0.1" });
    try {
      await device.powerOn();
      assert.notEqual(device.endpoint.port, 0);
      device.rtcMemory = RTC_MAGIC;
      device.reset("soft");
      await device.waitForState("ota");
      const image = buildMicroPythonImage({ size: 40 * 1024, seed: 2 });
      const booted = device.events.once("appBoot");
      await stopAndWait({
        channel: sender,
        to: device.endpoint,
        clock: systemClock,
        packets: signImage(image, referenceKey, 512),
      });
      const app = await booted;
      assert.equal(app.md5, imageIdentity(image));
      assert.deepEqual(device.flash.read(0x3c000, image.length), image);
    } finally {
      await sender.close();
      await device.close();
    }
  });
});
