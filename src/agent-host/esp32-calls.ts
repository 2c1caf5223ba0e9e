import type { Esp32BoardPort } from "./esp32-board-port.ts";
import type { Esp32CallName } from "./worker-protocol.ts";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
/** Partition sizes bound every read: no call asks the host for more than the largest partition. */
const MAX_READ = 0x400000;

/**
 * Serves one `esp32_*` call of the worker from the board: the partition
 * table as JSON rows [label, type, subtype, address, size, encrypted], a
 * label ("" for none), hex bytes, or an esp_err_t.
 */
export function serveEsp32Call(
  board: Esp32BoardPort,
  name: Esp32CallName,
  args: Array<string | number>,
): string | number {
  const [a, b, c] = args;
  const label = String(a ?? "");
  switch (name) {
    case "table":
      return JSON.stringify(
        board.partitions().map((p) => [p.label, p.type, p.subtype, p.address, p.size, p.encrypted ? 1 : 0]),
      );
    case "boot":
      return board.bootPartition() ?? "";
    case "running":
      return board.runningPartition() ?? "";
    case "next":
      return board.nextUpdatePartition(label) ?? "";
    case "read": {
      const size = Number(c);
      if (!(size >= 0 && size <= MAX_READ)) return 0x104; // ESP_ERR_INVALID_SIZE
      const r = board.partitionRead(label, Number(b), size);
      return typeof r === "number" ? r : hex(r);
    }
    case "write":
      return board.partitionWrite(label, Number(b), Buffer.from(String(c ?? ""), "hex"));
    case "erase":
      return board.partitionErase(label, Number(b), Number(c));
    case "set_boot":
      return board.setBoot(label);
    case "mark_valid":
      return board.markAppValid();
  }
}
