import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeAck, signEndPacket, signPacket, withSeq } from "../../src/protocol/datagram.ts";
import { signImage } from "../../src/protocol/image-packets.ts";
import { generateKeyPair } from "../../src/protocol/rsa-key.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { enterOta, referenceKey, rig, sendAndCollect, stopAndWait } from "./test-sender.ts";

const APP = 0x3c000;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const packetAt = (image: Uint8Array, offset: number, block = 256) =>
  signPacket(referenceKey, offset, image.subarray(offset, offset + block));

describe("ota-server on the emulated device", () => {
  it("stores a 600 KiB image byte-exact at MAIN_APP_OFFSET, then boots it (MD5 check passes)", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 600 * 1024, seed: 3 });
    const started = r.clock.now();
    const booted = r.device.events.once("appBoot");
    const stats = await r.push(image);
    const app = await r.clock.run(booted);
    assert.equal(stats.retransmits, 0);
    assert.equal(stats.acks.length, Math.ceil(image.length / 256));
    assert.deepEqual(r.device.flash.read(APP, image.length), image);
    assert.ok(r.device.flash.read(APP + image.length, 4096 - (image.length % 4096)).every((b) => b === 0xff));
    assert.deepEqual(app, { size: image.length - 16, md5: imageIdentity(image), checked: true });
    assert.equal(r.device.state, "app");
    assert.equal(r.device.stats.sectorsWritten, Math.ceil(image.length / 4096));
    assert.ok(r.lines().includes("OTA finished, rexmits: 0"));
    assert.ok(r.lines().includes(`Running app ${imageIdentity(image)}`));
    // Stop-and-wait on a lossless link runs at about the device floor (UART-bound, ~33 s for 600 KiB).
    const seconds = (r.clock.now() - started) / 1000;
    assert.ok(seconds > 32 && seconds < 40, `took ${seconds} s of device time`);
  });

  it("acknowledges with 20 bytes: the seq echoed, the datagram's 8-byte header, 8 zero bytes", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000 });
    const replies = await sendAndCollect(r, withSeq(0x01020304, packetAt(image, 0)));
    assert.equal(replies.length, 1);
    assert.equal(hex(replies[0] as Uint8Array), `04030201${"0000"}${"0001"}${"00000000"}${"00".repeat(8)}`);
    const second = await sendAndCollect(r, withSeq(7, packetAt(image, 256)));
    assert.equal(hex(second[0] as Uint8Array), `07000000000000010001000000000000${"00".repeat(4)}`);
  });

  it("re-acknowledges a duplicate of the last accepted datagram with the new seq, and counts it", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000 });
    await sendAndCollect(r, withSeq(1, packetAt(image, 0)));
    const dup = await sendAndCollect(r, withSeq(2, packetAt(image, 0)));
    assert.deepEqual(dup, [encodeAck({ seq: 2, op: 0, length: 256, offset: 0 })]);
    assert.equal(r.device.stats.duplicates, 1);
    assert.equal(r.device.receiverState?.expectedOffset, 256);
    // An older datagram is not a duplicate: it is out of order.
    await sendAndCollect(r, withSeq(3, packetAt(image, 256)));
    assert.deepEqual(await sendAndCollect(r, withSeq(4, packetAt(image, 0))), []);
    const end = await sendAndCollect(r, withSeq(5, signEndPacket(referenceKey)));
    assert.deepEqual(end, [], "the end packet gets no reply");
    assert.ok(r.lines().includes("OTA finished, rexmits: 1"));
  });

  it("drops out-of-order datagrams silently: no ack, no state change", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000 });
    await sendAndCollect(r, withSeq(1, packetAt(image, 0)));
    assert.deepEqual(await sendAndCollect(r, withSeq(2, packetAt(image, 512))), []);
    assert.equal(r.device.stats.dropped["unexpected-offset"], 1);
    assert.equal(r.device.receiverState?.expectedOffset, 256);
    assert.ok(r.lines().includes("Unexpected offset"));
    assert.equal((await sendAndCollect(r, withSeq(3, packetAt(image, 256)))).length, 1);
  });

  it("drops datagrams signed with another key or altered after signing; flash untouched", async () => {
    const r = await rig();
    await enterOta(r);
    const other = generateKeyPair(512).key;
    const data = new Uint8Array(4096).fill(0x5a);
    for (let i = 0; i < 16; i++) {
      const replies = await sendAndCollect(
        r,
        withSeq(i + 1, signPacket(other, i * 256, data.subarray(0, 256))),
      );
      assert.deepEqual(replies, []);
    }
    assert.equal(r.device.stats.dropped["bad-signature"], 16);
    assert.ok(r.lines().includes("Invalid digest size in signature"));
    const tampered = withSeq(20, signPacket(referenceKey, 0, data.subarray(0, 256)));
    tampered[4 + 8 + 10] ^= 0xff;
    assert.deepEqual(await sendAndCollect(r, tampered), []);
    assert.equal(r.device.stats.dropped["bad-sha1"], 1);
    assert.ok(r.lines().includes("Invalid SHA1"));
    assert.deepEqual(await sendAndCollect(r, new Uint8Array(7)), []);
    assert.equal(r.device.stats.dropped["too-short"], 1);
    assert.equal(r.device.stats.acksSent, 0);
    assert.ok(r.device.flash.read(0, r.device.flash.size).every((b) => b === 0xff));
    assert.equal(r.device.receiverState?.expectedOffset, 0);
  });

  it("drops a datagram that would overflow the 4 KiB buffer (a block that does not tile it)", async () => {
    const r = await rig();
    await enterOta(r);
    const data = new Uint8Array(6000).fill(0x11);
    assert.equal(
      (await sendAndCollect(r, withSeq(1, signPacket(referenceKey, 0, data.subarray(0, 3000))))).length,
      1,
    );
    assert.deepEqual(
      await sendAndCollect(r, withSeq(2, signPacket(referenceKey, 3000, data.subarray(3000, 6000)))),
      [],
    );
    assert.equal(r.device.stats.dropped["buffer-overflow"], 1);
    assert.ok(r.lines().includes("Buffer overflow - wrong chunk size"));
    assert.deepEqual(r.device.receiverState, { expectedOffset: 3000, buffered: 3000 });
  });

  it("queues 7 datagrams while busy and loses the rest", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000 });
    const acks: number[] = [];
    r.sender.onMessage((d) => acks.push(new DataView(d.buffer, d.byteOffset).getUint32(0, true)));
    for (let i = 0; i < 20; i++) r.sender.send(r.device.endpoint, withSeq(i + 1, packetAt(image, i * 256)));
    await r.clock.advance(1000);
    // One in process, seven queued and handled in order, twelve lost.
    assert.equal(r.device.stats.queueOverflows, 12);
    assert.equal(r.device.stats.dropped["queue-overflow"], 12);
    assert.deepEqual(acks, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(r.device.receiverState?.expectedOffset, 8 * 256);
  });

  it("honours the end datagram at any offset: writes the partial sector, reboots", async () => {
    const r = await rig();
    await enterOta(r);
    const image = buildMicroPythonImage({ size: 40000, seed: 9 });
    const partial = signImage(image.subarray(0, 2 * 4096 + 1536), referenceKey, 256).filter(
      (p) => p.length > 0,
    );
    await r.clock.run(
      stopAndWait({ channel: r.sender, to: r.device.endpoint, clock: r.clock, packets: partial }),
    );
    assert.equal(r.device.stats.sectorsWritten, 2);
    const end = signPacket(referenceKey, 0x7777, new Uint8Array(0));
    const rebooting = r.device.waitForState("booting");
    assert.deepEqual(await sendAndCollect(r, withSeq(99, end)), []);
    await r.clock.run(rebooting);
    assert.equal(r.device.stats.sectorsWritten, 3);
    assert.ok(r.lines().includes(`Writing 1536 bytes of buf to ${(APP + 8192).toString(16)}`));
    assert.deepEqual(r.device.flash.read(APP, 8192 + 1536), image.subarray(0, 8192 + 1536));
    assert.ok(r.device.flash.read(APP + 8192 + 1536, 4096 - 1536).every((b) => b === 0xff));
    assert.ok(r.lines().includes("OTA finished, rexmits: 0"));
  });

  it("ignores datagrams while booting and while the app runs", async () => {
    const r = await rig();
    const image = buildMicroPythonImage({ size: 40000 });
    // Power-on: boot8266 watches the GPIOs for 3 s, then checks the (erased) flash.
    assert.equal(r.device.state, "booting");
    assert.deepEqual(await sendAndCollect(r, withSeq(1, packetAt(image, 0))), []);
    assert.equal(r.device.stats.datagramsIgnored, 1);
    await r.clock.run(r.device.waitForState("ota"));
    assert.ok(
      r.clock.now() >= 5500 && r.clock.now() < 5600,
      `OTA after GPIO wait + 2.5 s, at ${r.clock.now()}`,
    );
  });
});
