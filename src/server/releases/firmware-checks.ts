import { imageFromOtaFile } from "../../firmware/ota-file-analysis.ts";
import { preflight, refusalMessage } from "../../firmware/preflight.ts";
import { RequestError } from "../base/request-error.ts";
import type { StoredVerdict } from "../storage/storage.ts";

export interface CheckedFirmware {
  /** The image to store and push (unpacked when a canned .ota file was given). */
  image: Uint8Array;
  identity: string;
  micropython: string | null;
  build: string | null;
  verdicts: StoredVerdict[];
}

/**
 * The preflight checks of src/firmware (file kind, size word and MD5
 * trailer, OTA build, flash layout) for an image about to be stored or
 * pushed. A refusal becomes a {@link RequestError} listing every cause and
 * fix; nothing may be stored or pushed then.
 */
export function firmwareChecks(
  bytes: Uint8Array,
  options: { flashSize: number; force?: boolean; source?: string },
): CheckedFirmware {
  const source = options.source ?? "The image";
  let result: ReturnType<typeof preflight>;
  try {
    result = preflight(bytes, { flashSize: options.flashSize, force: options.force === true, source });
  } catch (error) {
    throw new RequestError(`${source} cannot be checked: ${(error as Error).message}`);
  }
  if (!result.ok) throw new RequestError(refusalMessage(result, source));
  if (result.identity === null) {
    throw new RequestError(
      `${source} has no MD5 trailer, so devices could never report it as their firmware.`,
    );
  }
  const image = result.input === "ota-file" ? imageFromOtaFile(bytes, source) : bytes;
  return {
    image,
    identity: result.identity.toLowerCase(),
    micropython: result.version,
    build: result.build,
    verdicts: result.verdicts.map((v) => ({
      check: v.check,
      level: v.level,
      forced: v.forced,
      message: v.fix && v.level !== "ok" ? `${v.message} ${v.fix}` : v.message,
    })),
  };
}
