import { checkBlockSize } from "../protocol/datagram.ts";
import { OtaReceiver, type PrintPart, type ReceiverStep, VERIFY_STEPS } from "./receiver.ts";

/**
 * The modelled ESP8266's costs (spec: "Timing model for the emulator").
 * Estimates, not measurements; every figure can be changed.
 */
export interface DeviceTiming {
  /** UART speed of the receiver's log; 0 means the ROM default, 74880. */
  baudRate: number;
  /** UART transmit FIFO; a print busy-waits while it is full. */
  uartFifoBytes: number;
  /** "UDP incoming" + "Pkt id", printed before the check. */
  printBeforeCheckBytes: number;
  /** Signature + SHA1 check of one datagram. */
  checkMs: number;
  /** "offset/len" + "Proc1 time", printed before the ack of an accepted datagram. */
  printAfterCheckBytes: number;
  /** The "offset/len" line alone (duplicates, drops after the check, the end packet). */
  offsetLineBytes: number;
  /** "Writing 4096 bytes of buf to ..." */
  printSectorWriteBytes: number;
  /** Erasing one 4 KiB sector. */
  sectorEraseMs: number;
  /** Programming 4 KiB. */
  sectorProgramMs: number;
  /** "Full time", printed after the ack. */
  printAfterAckBytes: number;
  /** Datagrams that wait while the receiver is busy; more are lost. */
  receiveQueue: number;
  /** From reset to the receiver answering, when OTA mode is chosen at once (RTC magic, gpio_mask 0). */
  otaBootMs: number;
  /** From boot8266's decision to the main app running (a model value, not from the spec's table). */
  appBootMs: number;
}

export const DEFAULT_TIMING: DeviceTiming = {
  baudRate: 115200,
  uartFifoBytes: 128,
  printBeforeCheckBytes: 61,
  checkMs: 1.0,
  printAfterCheckBytes: 41,
  offsetLineBytes: 24,
  printSectorWriteBytes: 35,
  sectorEraseMs: 50,
  sectorProgramMs: 15,
  printAfterAckBytes: 17,
  receiveQueue: 7,
  otaBootMs: 2500,
  appBootMs: 500,
};

/** The ESP8266 ROM's UART speed, kept when BAUD_RATE is 0. */
export const ROM_BAUD_RATE = 74880;

export function resolveTiming(timing: Partial<DeviceTiming> = {}): DeviceTiming {
  return { ...DEFAULT_TIMING, ...timing };
}

/**
 * The UART transmit FIFO as a fluid: it drains at baud/10 bytes per second;
 * a print of n bytes returns when the last byte has entered the FIFO.
 */
export class UartFifo {
  private level = 0;
  private at = 0;
  private readonly bytesPerMs: number;

  constructor(
    baudRate: number,
    private readonly capacity: number,
  ) {
    this.bytesPerMs = (baudRate === 0 ? ROM_BAUD_RATE : baudRate) / 10 / 1000;
  }

  /** Prints `bytes` starting at `time`; returns when the CPU is free again. */
  print(bytes: number, time: number): number {
    this.level = Math.max(0, this.level - (time - this.at) * this.bytesPerMs);
    this.at = time;
    const excess = this.level + bytes - this.capacity;
    if (excess <= 0) {
      this.level += bytes;
      return time;
    }
    const done = time + excess / this.bytesPerMs;
    this.level = this.capacity;
    this.at = done;
    return done;
  }
}

function printBytes(part: PrintPart, text: string | undefined, t: DeviceTiming): number {
  switch (part) {
    case "incoming":
      return t.printBeforeCheckBytes;
    case "checked":
      return t.printAfterCheckBytes;
    case "offset":
      return t.offsetLineBytes;
    case "sector":
      return t.printSectorWriteBytes;
    case "full-time":
      return t.printAfterAckBytes;
    case "text":
      return (text?.length ?? 0) + 1;
  }
}

/**
 * Runs the receiver's steps on the single CPU from `start`, calling
 * `effect(step, time)` for each step at the time it happens. Returns the
 * time the CPU is free again.
 */
export function runSteps(
  steps: readonly ReceiverStep[],
  start: number,
  uart: UartFifo,
  timing: DeviceTiming,
  effect?: (step: ReceiverStep, time: number) => void,
): number {
  let time = start;
  for (const step of steps) {
    if (step.op === "print") {
      effect?.(step, time);
      time = uart.print(printBytes(step.part, step.text, timing), time);
    } else if (step.op === "work") {
      time +=
        step.what === "check"
          ? timing.checkMs
          : step.what === "erase"
            ? timing.sectorEraseMs
            : timing.sectorProgramMs;
    } else {
      effect?.(step, time);
    }
  }
  return time;
}

const FLOOR_PEER = { address: "0.0.0.0", port: 0 };
// The floor runs only the receiver's post-check work, which never looks at the key.
const NO_KEY = { modulus: new Uint8Array(64), bits: 512 };

/**
 * The device-bound floor of a transfer (ms): the timing model alone over
 * the datagram sequence of an image (data datagrams, then one end
 * datagram), every datagram arriving the moment the receiver can take it,
 * none lost.
 */
export function deviceFloorMs(imageSize: number, block: number, timing: Partial<DeviceTiming> = {}): number {
  checkBlockSize(block);
  const t = resolveTiming(timing);
  const receiver = new OtaReceiver(
    NO_KEY,
    { mainAppOffset: 0, pktWaitMs: Infinity, idleRebootMs: Infinity },
    0,
  );
  const uart = new UartFifo(t.baudRate, t.uartFifoBytes);
  let time = 0;
  let seq = 1;
  const datagram = (offset: number, length: number) => ({
    seq: seq++,
    op: 0,
    offset,
    length,
    data: new Uint8Array(length),
  });
  for (let offset = 0; offset < imageSize; offset += block) {
    const length = Math.min(block, imageSize - offset);
    time = runSteps(
      [...VERIFY_STEPS, ...receiver.process(datagram(offset, length), FLOOR_PEER)],
      time,
      uart,
      t,
    );
  }
  return runSteps([...VERIFY_STEPS, ...receiver.process(datagram(0, 0), FLOOR_PEER)], time, uart, t);
}
