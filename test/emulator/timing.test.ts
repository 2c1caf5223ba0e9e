import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deviceFloorMs, UartFifo } from "../../src/emulator/timing.ts";

const within = (actual: number, expected: number, tolerance = 0.03) =>
  assert.ok(
    Math.abs(actual - expected) <= expected * tolerance,
    `${actual.toFixed(0)} ms is not within 3% of ${expected} ms`,
  );

describe("timing model", () => {
  it("gives the spec's device-bound floors for 600 KiB", () => {
    within(deviceFloorMs(614400, 256), 33_300);
    within(deviceFloorMs(614400, 512), 20_900);
    within(deviceFloorMs(614400, 1024), 14_700);
    within(deviceFloorMs(614400, 256, { baudRate: 921600 }), 12_700);
  });

  it("is slower at the ROM's 74880 baud (BAUD_RATE 0) and without the FIFO's slack", () => {
    assert.ok(
      deviceFloorMs(614400, 256, { baudRate: 0 }) > deviceFloorMs(614400, 256, { baudRate: 74880 }) - 1,
    );
    assert.ok(deviceFloorMs(614400, 256, { uartFifoBytes: 1 }) > deviceFloorMs(614400, 256));
  });

  it("refuses a block size that does not tile the sector", () => {
    assert.throws(() => deviceFloorMs(614400, 300), /does not tile/);
  });

  it("UART FIFO: a print blocks only for the bytes that do not fit", () => {
    const uart = new UartFifo(115200, 128);
    assert.equal(uart.print(100, 0), 0);
    // 28 bytes of room left, 72 more must drain at 11.52 bytes/ms.
    assert.equal(uart.print(100, 0), 72 / 11.52);
    // After a long pause the FIFO is empty again.
    assert.equal(uart.print(128, 1000), 1000);
  });
});
