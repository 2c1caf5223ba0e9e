import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EmulatedDevice } from "../../src/emulator/device.ts";
import { RTC_MAGIC } from "../../src/firmware/rtc-memory.ts";
import { systemClock } from "../../src/net/clock.ts";
import { NodeUdpNetwork } from "../../src/net/node-udp.ts";
import { type SignedPacket, signPacket } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import type { SigningKey } from "../../src/protocol/rsa-key.ts";
import { ImagePusher } from "../../src/server/deliveries/image-pusher.ts";
import { SignedImageCache } from "../../src/server/deliveries/signed-image-cache.ts";
import type { PushSource } from "../../src/transfer/sender.ts";
import { testKey } from "../server/support/test-server.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

const IMAGE = buildMicroPythonImage({ size: 10_000, seed: 71 });
const OTHER = buildMicroPythonImage({ size: 9_000, seed: 72 });
const THIRD = buildMicroPythonImage({ size: 8_000, seed: 73 });

/** A cache whose signer counts its calls: every call is one RSA operation. */
function countingCache(maxImages = 4): { cache: SignedImageCache; calls: () => number } {
  let calls = 0;
  const cache = new SignedImageCache({
    key: testKey,
    block: 256,
    maxImages,
    sign: (key: SigningKey, offset: number, data: Uint8Array) => {
      calls++;
      return signPacket(key, offset, data);
    },
  });
  return { cache, calls: () => calls };
}

async function drain(source: PushSource): Promise<SignedPacket[]> {
  const out: SignedPacket[] = [];
  for await (const p of source.packets) out.push(p);
  return out;
}

const packetsOf = (image: Uint8Array) => Math.ceil(image.length / 256) + 1;

describe("signed datagrams, once per firmware", () => {
  it("gives the same bytes as signing on the fly, and signs an image only once", async () => {
    const { cache, calls } = countingCache();
    const first = await drain(cache.source(imageIdentity(IMAGE), IMAGE));
    const reference = signImage(IMAGE, testKey, 256);
    // The reference sends the end packet three times; a push source carries it once.
    assert.deepEqual(first, reference.slice(0, first.length));
    assert.equal(first.at(-1)?.length, 0);
    assert.equal(calls(), packetsOf(IMAGE));
    const again = await drain(cache.source(imageIdentity(IMAGE), IMAGE));
    assert.deepEqual(again, first);
    assert.equal(calls(), packetsOf(IMAGE), "no signing for the second push");
    assert.equal(cache.signatures, packetsOf(IMAGE));
  });

  it("shares an image being signed between pushes that start at the same time", async () => {
    const { cache, calls } = countingCache();
    const id = imageIdentity(IMAGE);
    const all = await Promise.all([1, 2, 3].map(() => drain(cache.source(id, IMAGE))));
    assert.equal(calls(), packetsOf(IMAGE));
    for (const packets of all) assert.equal(packets.length, packetsOf(IMAGE));
  });

  it("signs again when the bytes under an identity changed, and keeps a bounded number of images", async () => {
    const { cache, calls } = countingCache(2);
    const id = imageIdentity(IMAGE);
    await drain(cache.source(id, IMAGE));
    // The identity (MD5 trailer) does not cover the first four bytes: a changed header must not reuse signatures.
    const changed = new Uint8Array(IMAGE);
    changed[2] ^= 0x10;
    const resigned = await drain(cache.source(id, changed));
    assert.equal(calls(), 2 * packetsOf(IMAGE));
    assert.notDeepEqual(resigned[0]?.payload, signImage(IMAGE, testKey, 256)[0]?.payload);
    await drain(cache.source(imageIdentity(OTHER), OTHER));
    await drain(cache.source(imageIdentity(THIRD), THIRD));
    assert.equal(cache.size, 2);
    const before = calls();
    await drain(cache.source(imageIdentity(THIRD), THIRD));
    assert.equal(calls(), before, "the most recent image is kept");
    await drain(cache.source(id, changed));
    assert.equal(calls(), before + packetsOf(IMAGE), "the least recently used one was dropped");
  });

  it("an image pusher updates three emulated devices with one image's worth of signing", async () => {
    const { cache, calls } = countingCache();
    const network = new NodeUdpNetwork();
    const pusher = new ImagePusher({ network, key: testKey, block: 256, clock: systemClock, cache });
    const devices = [1, 2, 3].map(
      () =>
        new EmulatedDevice({
          network,
          address: "127.0.0.1",
          port: 0,
          clock: systemClock,
          key: testKey,
          timing: { baudRate: 921600, otaBootMs: 50, appBootMs: 10 },
          settings: { gpioWaitMs: 100 },
        }),
    );
    try {
      for (const device of devices) {
        await device.powerOn();
        device.rtcMemory = RTC_MAGIC;
        device.reset("soft");
        await device.waitForState("ota");
      }
      await Promise.all(
        devices.map(async (device) => {
          const booted = device.events.once("appBoot");
          await pusher.push({
            device: device.endpoint,
            imagePath: "/nonexistent: the bytes come from the cache",
            image: { id: imageIdentity(IMAGE), bytes: IMAGE },
            waitMs: 5000,
          });
          assert.equal((await booted).md5, imageIdentity(IMAGE));
          assert.deepEqual(device.flash.read(0x3c000, IMAGE.length), IMAGE);
        }),
      );
      assert.equal(calls(), packetsOf(IMAGE));
    } finally {
      for (const device of devices) await device.close();
    }
  });
});
