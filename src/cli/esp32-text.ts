import type { Esp32Inspection } from "../firmware/esp32-inspect.ts";
import { FIRST_APP_OFFSET, PARTITION_TABLE_OFFSET } from "../firmware/esp32-merged-firmware.ts";
import { formatTable, hex, sizeText } from "../firmware/format.ts";

/** `inspect`'s sections for an ESP32 app image or a merged firmware.bin. */
export function esp32Text(e: Esp32Inspection): string[] {
  if (e.merged) {
    const rows = [
      ["part", "offset"],
      ["bootloader", hex(e.merged.bootloaderOffset)],
      ["partition table", hex(PARTITION_TABLE_OFFSET)],
      ["app", `${hex(FIRST_APP_OFFSET)}${e.merged.appChip ? ` (for ${e.merged.appChip})` : ""}`],
    ];
    return [`merged firmware.bin\n${formatTable(rows, { header: true, indent: "  " }).trimEnd()}`];
  }
  const image = e.image;
  if (!image) return [];
  const d = image.appDescription;
  const checksum = image.checksum.ok
    ? `${hex(image.checksum.computed, 2)}, ok`
    : `stored ${hex(image.checksum.stored, 2)}, computed ${hex(image.checksum.computed, 2)}: mismatch`;
  const hash = !image.hash.appended
    ? "not appended"
    : image.hash.ok
      ? `${image.hash.computed}, ok`
      : `stored ${image.hash.stored}, computed ${image.hash.computed}: mismatch`;
  const slot =
    e.slot.room >= 0
      ? `${sizeText(e.slot.size)}, ${e.slot.layout}: fits, ${sizeText(e.slot.room)} left`
      : `${sizeText(e.slot.size)}, ${e.slot.layout}: does NOT fit, ${sizeText(-e.slot.room)} too large`;
  const rows = [
    ["chip", `${image.chip.label} (revisions ${image.minChipRevision} to ${image.maxChipRevision})`],
    [
      "identity",
      d
        ? `${d.elfSha256} (the app description's ELF SHA-256; the device reads it from its running slot)`
        : "none (no app description)",
    ],
    ["app version", d ? d.version || "(empty)" : "-"],
    ["project", d ? d.projectName || "(empty)" : "-"],
    ["ESP-IDF", d ? d.idfVersion || "(empty)" : "-"],
    ["built", d ? `${d.date} ${d.time}`.trim() || "(empty)" : "-"],
    ["flash", `mode ${image.flashMode}, size ${image.flashSize}, frequency ${image.flashFrequency}`],
    ["entry", hex(image.entry, 8)],
    ["checksum", checksum],
    ["SHA-256", hash],
    [
      "image size",
      `${sizeText(image.imageLength)}${image.trailingBytes > 0 ? ` and ${image.trailingBytes} bytes after it` : ""}`,
    ],
    ["slot", slot],
  ];
  const segments = [
    ["segment", "load address", "length", "file offset"],
    ...image.segments.map((s) => [
      String(s.index),
      hex(s.loadAddress, 8),
      String(s.length),
      hex(s.fileOffset),
    ]),
  ];
  return [
    `ESP32 app image\n${formatTable(rows, { indent: "  " }).trimEnd()}`,
    `segments\n${formatTable(segments, { header: true, indent: "  " }).trimEnd()}`,
  ];
}
