import { COMMAND_VERSION_PATTERN } from "../../protocol/command-signature.ts";
import { type DeviceState, deviceIdProblem } from "../../protocol/mqtt-contract.ts";
import type { Topics } from "../api/topics.ts";
import { RequestError } from "../base/request-error.ts";
import type { Deliveries } from "../deliveries/delivery.ts";
import type { NetworkPolicy } from "../devices/network-policy.ts";
import {
  AppReplaceRefusedError,
  appReplaceRefusalText,
  replacedApp,
} from "../releases/app-replace-policy.ts";
import { chipRefusal } from "../releases/chip-refusal.ts";
import {
  DowngradeRefusedError,
  type FirmwareName,
  updateRefusalText,
  type VersionVerdict,
  versionVerdict,
} from "../releases/downgrade-policy.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { CheckedArtifact } from "../releases/release-kind.ts";
import { runningOf } from "../releases/release-kind.ts";
import type { FirmwareRecord, Storage } from "../storage/storage.ts";

/** How a job is created: by hand (the defaults), or by a rollout with its own limit of tries. */
export interface JobCreateOptions {
  /** Tries before the job fails (default: the server's). */
  maxAttempts?: number;
  /** Who asked, for the job's first step ("rollout r-1a2b, group 2"). */
  origin?: string;
  /** The rollout creating the job; without it, a device an active rollout still holds is refused. */
  rollout?: string;
  /**
   * Go ahead when the firmware is older than the one the device runs
   * (default: refuse, DowngradeRefusedError). Recorded in the job's first
   * step, for the signed command's `down`.
   */
  allowDowngrade?: boolean;
  /**
   * Go ahead when the app release's name is not the name of the app the
   * board runs (default: refuse, AppReplaceRefusedError). Recorded in the
   * job's first step, for the signed command's `down`.
   */
  replaceApp?: boolean;
}

export interface JobRequestDeps {
  storage: Storage;
  topics: Topics;
  library: FirmwareLibrary;
  policy: NetworkPolicy;
  deliveries: Deliveries;
  /**
   * Why a manual update of the device is refused because a rollout still
   * holds it, or undefined: given by the composition root (rollouts are not
   * part of the job core).
   */
  rolloutHold?: (deviceId: string) => Promise<string | undefined>;
}

/** A request that passed every check: what the job is created from. */
export interface CheckedJobRequest {
  firmware: FirmwareRecord;
  state: DeviceState;
  verdict: VersionVerdict;
  /** The app of another name the release replaces (allowed by `replaceApp`), or undefined. */
  replaces: FirmwareName | undefined;
  artifact: CheckedArtifact;
  /** The identity of what the device runs of the release's kind ("none": no app yet). */
  from: string;
}

/** Why a device without a credential gets no command: the server keeps its command counter with the credential. */
export function notProvisionedText(deviceId: string): string {
  return `Device ${deviceId} is not provisioned: it has no credential of its own, and the server keeps no command counter for it, so it cannot sign commands to it. Provision it with \`mpota devices add ${deviceId}\` and put the mpota_config.py it writes on the device.`;
}

/** Why a device whose agent cannot verify signed commands gets none, and the two ways out. */
export function unsignedRefusalText(deviceId: string): string {
  return `Device ${deviceId} runs an agent of MQTT contract version 1, which cannot verify signed commands: anyone who can publish on its command topic could send it into OTA mode. Update its agent (device/ of mpota, with the CMD_KEYS that \`mpota devices add\` writes), or allow unsigned commands for it with \`mpota devices allow-unsigned ${deviceId}\`.`;
}

/**
 * The checks of a request to update a device, in the order a user meets
 * them: the device, its credential and agent, the release, a rollout that
 * holds the device, its hardware (the target of what it runs, the chip it
 * reports against the kind's `chips`), the versions, the address, and last
 * what the release's kind says of the device. Throws {@link RequestError}
 * with the reason. The artifact is read and checked here, once for the job
 * (the release cache keeps it for the job's later steps).
 */
export async function checkJobRequest(
  d: JobRequestDeps,
  deviceId: string,
  firmwareRef: string,
  options: JobCreateOptions,
): Promise<CheckedJobRequest> {
  const problem = typeof deviceId === "string" ? deviceIdProblem(deviceId) : "no device id was given";
  if (problem) throw new RequestError(`Cannot update: ${problem}.`);
  const none = d.deliveries.noneAvailable;
  if (none) throw new RequestError(none);
  const device = await d.storage.devices.get(deviceId);
  if (!device?.state) {
    throw new RequestError(
      `No device "${deviceId}" has reported its state to this server. Check the id (\`mpota devices\` lists the known ones) and that the device runs the mpota agent with base topic "${d.topics.base}".`,
    );
  }
  const credential = await d.storage.credentials.get(deviceId);
  if (!credential) throw new RequestError(notProvisionedText(deviceId));
  if (device.state.v < 2 && !credential.allowUnsigned) throw new RequestError(unsignedRefusalText(deviceId));
  const firmware = await d.library.resolve(firmwareRef);
  const kind = d.library.kinds.of(firmware);
  const unavailable = d.deliveries.get(kind.delivery).unavailable;
  if (unavailable) throw new RequestError(unavailable.request);
  if (!COMMAND_VERSION_PATTERN.test(firmware.version)) {
    throw new RequestError(
      `${firmware.name} ${firmware.version} cannot be sent to a device: a signed command carries versions of 1 to 32 of A-Z a-z 0-9 . _ + - only. Add the image again under such a version (\`mpota firmware add FILE --name ${firmware.name} --version ...\`).`,
    );
  }
  if (options.rollout === undefined) {
    const held = await d.rolloutHold?.(deviceId);
    if (held !== undefined) throw new RequestError(held);
  }
  const state = device.state;
  const reported = runningOf(kind, state);
  if (reported.identity === firmware.id) {
    throw new RequestError(
      `Device ${deviceId} already runs ${firmware.name} ${firmware.version} (${firmware.id}); nothing to do.`,
    );
  }
  const stored =
    reported.identity === undefined ? undefined : await d.storage.firmware.get(reported.identity);
  if (stored) {
    // A device runs what its chip runs: an ESP8266 image cannot go to an ESP32, nor an ESP32-S3 app to an ESP32.
    const from = d.library.kinds.targetOf(stored);
    const to = d.library.kinds.targetOf(firmware);
    if (from !== to) {
      throw new RequestError(
        `Device ${deviceId} runs ${stored.name} ${stored.version}, built for ${from}; ${firmware.name} ${firmware.version} is built for ${to}, which the device cannot run. Pick a release built for ${from}.`,
      );
    }
  }
  // A device whose chip the release's kind does not serve (a Pico W and any firmware): refused here, for every kind.
  const chip = chipRefusal(
    d.library.kinds,
    firmware,
    state.chip,
    `${firmware.name} ${firmware.version} for ${deviceId}`,
  );
  if (chip !== undefined) throw new RequestError(chip);
  // An app the server never stored is still named by the board (its state's app name and version).
  const running =
    stored ??
    (reported.name !== undefined && reported.version !== undefined
      ? { name: reported.name, version: reported.version }
      : undefined);
  const from = reported.identity ?? "none";
  const verdict = versionVerdict(from, running, firmware);
  if (verdict.kind === "downgrade" && options.allowDowngrade !== true) {
    throw new DowngradeRefusedError(updateRefusalText(deviceId, verdict.from, firmware));
  }
  const replaces = replacedApp(reported, firmware);
  if (replaces && options.replaceApp !== true) {
    throw new AppReplaceRefusedError(appReplaceRefusalText(deviceId, replaces, firmware));
  }
  const refusal = d.policy.refusal(state.ip);
  if (refusal) {
    throw new RequestError(
      `Device ${deviceId} reports the address ${state.ip}, where this server does not push: ${refusal}`,
    );
  }
  let artifact: CheckedArtifact;
  try {
    artifact = await d.library.readRelease(firmware.id);
  } catch (error) {
    if (error instanceof FirmwareIntegrityError) throw new RequestError(error.message);
    throw error;
  }
  kind.checkDevice(artifact.bytes, state, `${firmware.name} ${firmware.version} for ${deviceId}`);
  return { firmware, state, verdict, replaces, artifact, from };
}
