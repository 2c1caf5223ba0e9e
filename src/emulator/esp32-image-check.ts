import { Esp32ImageError, parseEsp32AppImage } from "../firmware/esp32-app-image.ts";

/** Why an app partition's contents are not an image this chip runs, or null when they are. */
export type ImageVerdict = string | null;

/**
 * esp_image_verify(ESP_IMAGE_VERIFY) on an app partition, as set_boot() and
 * the bootloader run it: magic 0xE9, the chip id of this chip, at most 16
 * segments that all lie in the partition, the XOR checksum, the appended
 * SHA-256 when the header says one follows, and the image within the
 * partition. `slot` is the whole partition as flash holds it.
 */
export function verifyAppImage(slot: Uint8Array, chipId: number): ImageVerdict {
  let image: ReturnType<typeof parseEsp32AppImage>;
  try {
    image = parseEsp32AppImage(slot, "the partition", { refuseMerged: false });
  } catch (error) {
    if (error instanceof Esp32ImageError) return error.message;
    throw error;
  }
  if (image.chip.id !== chipId)
    return `the image is built for ${image.chip.label} (chip id ${image.chip.id})`;
  if (!image.checksum.ok) return "the image's checksum does not match its segments";
  if (image.hash.ok === false) return "the image's appended SHA-256 does not match it";
  if (image.imageLength > slot.length) return "the image is larger than its partition";
  return null;
}

/**
 * What the bootloader loads: a verified image that is an app. ESP-IDF's
 * bootloader refuses an image whose segments overlap its own RAM ("not
 * bootable"); the one such image people write to a slot is the bootloader
 * itself (the start of a merged firmware.bin), which has no esp_app_desc_t,
 * so the model tells it by that missing app description.
 */
export function bootableAppImage(slot: Uint8Array, chipId: number): ImageVerdict {
  const verdict = verifyAppImage(slot, chipId);
  if (verdict !== null) return verdict;
  const image = parseEsp32AppImage(slot, "the partition", { refuseMerged: false });
  return image.appDescription === null
    ? "its segments overlap the bootloader's RAM (a bootloader image, not an app): not bootable"
    : null;
}
