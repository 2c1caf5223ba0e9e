import { shorten } from "../../protocol/mqtt-contract.ts";
import type { DeviceTagsView, RolloutBridgeApi, RolloutDetail, RolloutView } from "../api/rollout-api.ts";
import { RequestError } from "../base/request-error.ts";
import type { Storage } from "../storage/storage.ts";
import { parseTags } from "./device-tags.ts";
import type { RolloutEngine } from "./rollout-engine.ts";

type Handlers = {
  [K in keyof RolloutBridgeApi]: (
    request: Record<string, unknown>,
  ) => Promise<RolloutBridgeApi[K]["response"]>;
};

function optionalText(request: Record<string, unknown>, key: string): string | undefined {
  const value = request[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new RequestError(`"${key}" must be a string.`);
  return value.trim() || undefined;
}

function optionalCount(request: Record<string, unknown>, key: string, max: number): number | undefined {
  const value = request[key];
  if (value === undefined || value === null) return undefined;
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > max) {
    throw new RequestError(`"${key}" must be a whole number from 0 to ${max}.`);
  }
  return value as number;
}

/** The bridge's `rollout/*` and `device/tags` requests, over the rollout engine and storage. */
export function rolloutHandlers(rollouts: RolloutEngine | undefined, storage: Storage): Handlers {
  const engine = (): RolloutEngine => {
    if (!rollouts) {
      throw new RequestError(
        "Rollouts are not available through this interface of the server; use the MQTT bridge (`mpota rollout`).",
      );
    }
    return rollouts;
  };
  return {
    "rollout/create": async (request): Promise<RolloutView> => engine().create(request),

    "rollout/list": async (request) => {
      const active = request.active;
      if (active !== undefined && active !== null && typeof active !== "boolean") {
        throw new RequestError('"active" must be true or false.');
      }
      const limit = optionalCount(request, "limit", 10_000) ?? 50;
      return engine().list({ ...(typeof active === "boolean" ? { active } : {}), limit });
    },

    "rollout/show": async (request): Promise<RolloutDetail> =>
      engine().show(request.id, optionalCount(request, "events", 100_000) ?? 50),

    "rollout/pause": async (request) => engine().pause(request.id, optionalText(request, "reason")),

    "rollout/resume": async (request) => engine().resume(request.id),

    "rollout/abort": async (request) => engine().abort(request.id, optionalText(request, "reason")),

    "device/tags": async (request): Promise<DeviceTagsView> => {
      const id = typeof request.id === "string" ? request.id.trim() : "";
      if (id === "") throw new RequestError('The request needs "id": the device id.');
      const device = await storage.devices.get(id);
      if (!device) {
        throw new RequestError(
          `No device "${shorten(id)}" is known. \`mpota devices\` lists the known ones.`,
        );
      }
      if (request.tags === undefined || request.tags === null)
        return { id, tags: await storage.tags.get(id) };
      return { id, tags: await storage.tags.set(id, parseTags(request.tags)) };
    },
  };
}
