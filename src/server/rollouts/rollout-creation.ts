/** A new rollout: the request checked, its devices chosen and planned into groups, and the record stored. */
import { randomBytes } from "node:crypto";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { shorten } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";
import type { FirmwareName } from "../releases/downgrade-policy.ts";
import { FirmwareIntegrityError } from "../releases/firmware-files.ts";
import { runningOf } from "../releases/release-kind.ts";
import { byAppName } from "./rollout-apps.ts";
import { byChip, byDevice } from "./rollout-chips.ts";
import type { RolloutEngineOptions } from "./rollout-engine-options.ts";
import { type Candidate, planRollout } from "./rollout-plan.ts";
import { parseRolloutRequest } from "./rollout-request.ts";

/** Stores the rollout a request asks for and returns its id; the engine then looks at it. */
export async function createRollout(
  o: RolloutEngineOptions,
  request: Record<string, unknown>,
): Promise<string> {
  const none = o.refusal?.();
  if (none) throw new RequestError(none);
  const input = parseRolloutRequest(request);
  const firmware = await o.library.resolve(input.firmware);
  const refusal = o.refusal?.(firmware);
  if (refusal) throw new RequestError(refusal);
  const kind = o.library.kinds.of(firmware);
  let artifact: Uint8Array;
  try {
    artifact = await o.library.readImage(firmware.id);
  } catch (error) {
    if (error instanceof FirmwareIntegrityError) throw new RequestError(error.message);
    throw error;
  }
  const store = await o.storage.firmware.list();
  const names = new Map<string, FirmwareName>(store.map((f) => [f.id, { name: f.name, version: f.version }]));
  const states = new Map<string, DeviceState>();
  const known = new Map(
    (await o.storage.devices.list()).flatMap((d) => {
      if (!d.state) return [];
      states.set(d.id, d.state);
      // What it runs of this kind: its firmware, or for an app release its app ("" for none yet).
      const fw = runningOf(kind, d.state).identity ?? "";
      return [[d.id, { id: d.id, fw, sleep: d.state.sleep ?? 0, chip: d.state.chip }]];
    }),
  );
  let candidates: Array<Candidate & { chip?: string | undefined }>;
  const sel = input.selector;
  if (sel.kind === "devices") {
    const unknown = sel.devices.filter((id) => !known.has(id));
    if (unknown.length > 0) {
      throw new RequestError(
        `${
          unknown.length === 1
            ? `No device "${shorten(unknown[0] as string)}" has reported its state`
            : `No devices ${unknown
                .slice(0, 5)
                .map((u) => `"${shorten(u)}"`)
                .join(
                  ", ",
                )}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ""} have reported their state`
        } to this server. Check the ids (\`mpota devices\` lists the known ones).`,
      );
    }
    candidates = sel.devices.map((id) => known.get(id) as Candidate);
  } else if (sel.kind === "tag") {
    candidates = (await o.storage.tags.devicesWith(sel.tag)).flatMap((id) => known.get(id) ?? []);
    if (candidates.length === 0) {
      throw new RequestError(
        `No device that reported its state carries the tag "${sel.tag}". Tag devices with \`mpota rollout tag DEVICE ${sel.tag}\` (bridge request device/tags).`,
      );
    }
  } else {
    candidates = [...known.values()].filter((c) => names.get(c.fw)?.name === sel.line);
    if (candidates.length === 0) {
      throw new RequestError(
        `No device runs a firmware of the line "${shorten(sel.line)}" (a firmware in the store with that name). \`mpota firmware list\` shows the lines and how many devices run each.`,
      );
    }
  }
  // One fleet holds ESP8266 and ESP32 devices: a release goes only to devices of its chip.
  const chips = byChip(
    o.library.kinds,
    firmware,
    candidates,
    new Map(store.map((f) => [f.id, f])),
    sel.kind === "devices",
  );
  // A kind with a running release of its own (an app) says which devices can take it (board, room, agent).
  const fits = kind.running
    ? byDevice(kind, artifact, firmware, chips.fit, states, sel.kind === "devices")
    : chips;
  const now = o.clock.now();
  const target = { id: firmware.id, name: firmware.name, version: firmware.version };
  // An app release would replace a board's app of another name: only with replaceApp.
  const apps = kind.running
    ? byAppName(kind, target, fits.fit, states, sel.kind === "devices", input.replaceApp)
    : fits;
  const leftOut = [
    chips.leftOut,
    fits === chips ? undefined : fits.leftOut,
    apps === fits ? undefined : apps.leftOut,
  ].filter((x) => x !== undefined);
  const plan = planRollout(input, target, apps.fit, names, now);
  const id = `r-${randomBytes(5).toString("hex")}`;
  const groups = plan.groups.map((g) => g.size).join(" + ");
  const result = await o.storage.rollouts.create(
    {
      id,
      name: input.name,
      firmwareId: firmware.id,
      firmwareName: firmware.name,
      firmwareVersion: firmware.version,
      firmwareSize: firmware.size,
      selector: input.selector,
      groups: plan.groups,
      gates: plan.groups.map(() => ({ proceed: false, waivedFailed: 0, waivedExecuted: 0 })),
      policy: {
        maxAttempts: input.retries !== undefined ? input.retries + 1 : o.maxAttempts,
        timeoutMs: input.timeoutMs,
        concurrency: input.concurrency,
        allowDowngrade: input.allowDowngrade,
        ...(input.replaceApp ? { replaceApp: true } : {}),
        onError: input.onError,
      },
      state: "scheduled",
      currentGroup: 0,
      startAt: input.startAt ?? now,
      createdAt: now,
    },
    plan.devices,
    {
      at: now,
      kind: "created",
      message: `Rollout of ${firmware.name} ${firmware.version} to ${plan.devices.length} device${plan.devices.length === 1 ? "" : "s"} created: groups of ${groups}${plan.already > 0 ? `; ${plan.already} already on it` : ""}${leftOut.map((l) => `; ${l}`).join("")}${input.startAt !== undefined && input.startAt > now ? `; starts ${new Date(input.startAt).toISOString()}` : ""}.`,
      data: { devices: plan.devices.length, groups: plan.groups.map((g) => g.size), already: plan.already },
    },
  );
  if (!result.ok) {
    const byRollout = new Map<string, string[]>();
    for (const c of result.conflicts) {
      const key = `${c.rolloutId}${c.rolloutName ? ` ("${c.rolloutName}")` : ""}`;
      byRollout.set(key, [...(byRollout.get(key) ?? []), c.deviceId]);
    }
    const parts = [...byRollout.entries()].map(
      ([rollout, devices]) =>
        `${devices.slice(0, 5).join(", ")}${devices.length > 5 ? ` and ${devices.length - 5} more` : ""} ${devices.length === 1 ? "is" : "are"} in active rollout ${rollout}`,
    );
    const first = result.conflicts[0]?.rolloutId;
    throw new RequestError(
      `Refused: a device can be in only one active rollout, and ${parts.join("; ")}. Wait for it to end, abort it (\`mpota rollout abort ${first}\`), or leave those devices out.`,
    );
  }
  o.logger.info(
    { rollout: id, firmware: firmware.id, devices: plan.devices.length, groups: plan.groups.length },
    "rollout created",
  );
  return id;
}
