import { shorten } from "../../protocol/mqtt-contract.ts";
import type { StatusView } from "../api/admin-views.ts";
import type { JobDetail, JobView, ServerInfo } from "../api/api.ts";
import { deviceView, firmwareView, jobView, stepView } from "../api/views.ts";
import { RequestError } from "../base/request-error.ts";
import type { JobRunner } from "../jobs/job-runner.ts";
import { APP_KIND } from "../releases/app-kind.ts";
import type { AppReleases } from "../releases/app-releases.ts";
import { jobReplacedApp } from "../releases/app-replace-policy.ts";
import { jobAllowsDowngrade } from "../releases/downgrade-policy.ts";
import type { FirmwareLibrary } from "../releases/firmware-library.ts";
import type { RolloutEngine } from "../rollouts/rollout-engine.ts";
import { rolloutHandlers } from "../rollouts/rollout-handlers.ts";
import type { FirmwareRecord, JobRecord, Storage } from "../storage/storage.ts";
import { type ProvisioningDeps, provisioningHandlers } from "../trust/provisioning.ts";
import { appHandlers } from "./app-handlers.ts";
import type { BridgeHandlers } from "./bridge.ts";

export interface BridgeHandlerDeps {
  storage: Storage;
  library: FirmwareLibrary;
  runner: JobRunner;
  /** How a release reaches a device (the default kind's for a release not stored). */
  deliveryOf: (release: FirmwareRecord | undefined) => { delivery: string; fetchedByDevice: boolean };
  /** The rollout engine; without it the rollout requests are refused. */
  rollouts?: RolloutEngine;
  info: () => ServerInfo;
  /** The instances sharing the storage (`mpota status`). */
  status?: () => Promise<StatusView>;
  /** Device credentials and the audit list; without it those requests are refused. */
  provisioning?: ProvisioningDeps;
  /** App releases; without it the app requests are refused. */
  apps?: AppReleases;
}

const NO_PROVISIONING = async (): Promise<never> => {
  throw new RequestError(
    "This part of the server does not provision devices; ask the server's bridge or HTTP API.",
  );
};

function stringField(request: Record<string, unknown>, key: string, what: string): string {
  const value = request[key];
  if (typeof value !== "string" || value.trim() === "") {
    throw new RequestError(`The request needs "${key}": ${what}.`);
  }
  return value.trim();
}

function optionalString(request: Record<string, unknown>, key: string): string | undefined {
  const value = request[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new RequestError(`"${key}" must be a string.`);
  return value;
}

function optionalInteger(
  request: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const value = request[key];
  if (value === undefined || value === null) return undefined;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw new RequestError(`"${key}" must be a whole number from ${min} to ${max}.`);
  }
  return value as number;
}

function optionalBoolean(request: Record<string, unknown>, key: string): boolean | undefined {
  const value = request[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new RequestError(`"${key}" must be true or false.`);
  return value;
}

function decodeImage(request: Record<string, unknown>): Uint8Array {
  const text = request.image;
  // The HTTP API hands an upload's bytes as they are; the bridge's JSON carries base64.
  if (text instanceof Uint8Array && text.length > 0) return text;
  if (typeof text !== "string" || text.length === 0) {
    throw new RequestError('The request needs "image": the firmware file, base64-encoded.');
  }
  if (!/^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(text)) throw new RequestError('"image" is not base64.');
  return Buffer.from(text, "base64");
}

/** The bridge's request handlers, over storage, the firmware library and the job runner. */
export function bridgeHandlers(deps: BridgeHandlerDeps): BridgeHandlers {
  const { storage, library, runner } = deps;
  const kindOf = (f: FirmwareRecord) => {
    const kind = library.kinds.of(f);
    const chips = kind.chips === "any" ? null : [...kind.chips].sort();
    return { kind: kind.name, target: library.kinds.targetOf(f), chips };
  };

  const firmwareIndex = async () =>
    new Map((await storage.firmware.list()).map((f) => [f.id, f] as [string, FirmwareRecord]));
  const activeJobs = async () =>
    new Map((await storage.jobs.list({ active: true })).map((j) => [j.deviceId, j] as [string, JobRecord]));
  const devicesRunning = async (id: string) =>
    (await storage.devices.list()).filter((d) => d.state?.fw === id).length;

  // How each job's release travels, from its kind: the CLI shows no push address and no
  // "pushing" for a release the device fetches. Each release is read once per answer, from
  // `firmware` (the whole store's index) when the handler has it, else from storage.
  const jobViews = async (jobs: JobRecord[], firmware?: Map<string, FirmwareRecord>): Promise<JobView[]> => {
    const facts = new Map<string, Promise<ReturnType<BridgeHandlerDeps["deliveryOf"]>>>();
    const factsOf = async (id: string) =>
      deps.deliveryOf(firmware ? firmware.get(id) : await storage.firmware.get(id));
    return Promise.all(
      jobs.map(async (job) => {
        const f = facts.get(job.firmwareId) ?? factsOf(job.firmwareId);
        facts.set(job.firmwareId, f);
        return { ...jobView(job), ...(await f) };
      }),
    );
  };
  /** An app job's files and bytes, from its release's manifest (none when it cannot be read). */
  const appOf = async (job: JobRecord, release: FirmwareRecord | undefined): Promise<JobDetail["app"]> => {
    if (deps.apps === undefined || library.kinds.of(release).name !== APP_KIND) return undefined;
    try {
      const manifest = await deps.apps.manifestOf(job.firmwareId);
      return { files: manifest.files.length, bytes: manifest.total };
    } catch {
      return undefined; // removed or damaged: the job still shows, with the manifest's size only
    }
  };

  return {
    ...appHandlers(deps.apps, storage),
    info: async () => deps.info(),

    devices: async (request) => {
      // Paged when asked (the HTTP API always asks): ids after `after`, at most `limit`.
      const limit = optionalInteger(request, "limit", 1, 100_000);
      const after = optionalString(request, "after");
      const [devices, firmware, jobs] = await Promise.all([
        limit === undefined ? storage.devices.list() : storage.devices.page(after, limit),
        firmwareIndex(),
        activeJobs(),
      ]);
      const views = devices.map((d) => deviceView(d, firmware, jobs.get(d.id)));
      // How each active job's release travels: `mpota devices` says "fetching" for a release the device fetches.
      const active = devices.flatMap((d) => jobs.get(d.id) ?? []);
      const facts = new Map((await jobViews(active, firmware)).map((j) => [j.id, j] as [string, JobView]));
      return views.map((v) => {
        const j = v.job ? facts.get(v.job.id) : undefined;
        return v.job && j
          ? { ...v, job: { ...v.job, delivery: j.delivery, fetchedByDevice: j.fetchedByDevice } }
          : v;
      });
    },

    device: async (request) => {
      const id = stringField(request, "id", "the device id");
      const device = await storage.devices.get(id);
      if (!device) {
        // Right after `mpota devices add` the id is provisioned but not yet a device: say what makes it one.
        if ((await storage.credentials.get(id)) !== undefined) {
          throw new RequestError(
            `Device "${id}" is provisioned but has not reported its state yet: put the mpota_config.py that \`mpota devices add ${id}\` wrote on the board with the agent and start it; it appears once its agent publishes its state.`,
            { notFound: true },
          );
        }
        throw new RequestError(
          `No device "${shorten(id)}" is known. \`mpota devices\` lists the known ones.`,
          { notFound: true },
        );
      }
      const limit = optionalInteger(request, "history", 0, 1000) ?? 20;
      const [firmware, history, jobs] = await Promise.all([
        firmwareIndex(),
        storage.devices.history(id, limit),
        storage.jobs.list({ deviceId: id, limit: 20 }),
      ]);
      const active = jobs.find((j) => j.finishedAt === null);
      return {
        ...deviceView(device, firmware, active),
        history: history.map((h) => ({ at: h.at, state: h.state })),
        jobs: await jobViews(jobs, firmware),
      };
    },

    "firmware/list": async () => {
      const [firmware, devices] = await Promise.all([storage.firmware.list(), storage.devices.list()]);
      return firmware.map((f) =>
        firmwareView(f, devices.filter((d) => d.state?.fw === f.id).length, kindOf(f)),
      );
    },

    "firmware/add": async (request) => {
      const bytes = decodeImage(request);
      const notes = optionalString(request, "notes");
      const filename = optionalString(request, "filename");
      const flash = optionalInteger(request, "flash", 0, 64 * 1024 * 1024);
      const force = optionalBoolean(request, "force");
      const result = await library.add({
        bytes,
        name: stringField(request, "name", "the firmware's name, e.g. sensor"),
        version: stringField(request, "version", "the firmware's version, e.g. 1.4.2"),
        ...(notes !== undefined ? { notes } : {}),
        ...(filename !== undefined ? { source: shorten(filename, 120) } : {}),
        ...(flash !== undefined ? { flashSize: flash } : {}),
        ...(force !== undefined ? { force } : {}),
      });
      return {
        firmware: firmwareView(result.record, await devicesRunning(result.record.id), kindOf(result.record)),
        verdicts: result.verdicts,
      };
    },

    "firmware/remove": async (request) => {
      const removed = await library.remove(
        stringField(request, "id", "the firmware's identity or name@version"),
      );
      return firmwareView(removed, await devicesRunning(removed.id), kindOf(removed));
    },

    update: async (request) => {
      const device = stringField(request, "device", "the device id");
      const firmware = stringField(request, "firmware", "the firmware's identity, name@version or name");
      const allowDowngrade = optionalBoolean(request, "allowDowngrade");
      const replaceApp = optionalBoolean(request, "replaceApp");
      const job = await runner.create(device, firmware, {
        ...(allowDowngrade ? { allowDowngrade } : {}),
        ...(replaceApp ? { replaceApp } : {}),
      });
      return (await jobViews([job]))[0] as JobView;
    },

    jobs: async (request) => {
      const device = optionalString(request, "device");
      const active = optionalBoolean(request, "active");
      const limit = optionalInteger(request, "limit", 1, 10_000) ?? 100;
      const jobs = await storage.jobs.list({
        ...(device !== undefined ? { deviceId: device } : {}),
        ...(active !== undefined ? { active } : {}),
        limit,
      });
      return jobViews(jobs);
    },

    job: async (request) => {
      const id = stringField(request, "id", "the job id");
      const job = await storage.jobs.get(id);
      if (!job)
        throw new RequestError(`There is no job "${shorten(id)}". \`mpota jobs\` lists them.`, {
          notFound: true,
        });
      const [steps, release] = await Promise.all([
        storage.jobs.steps(id),
        storage.firmware.get(job.firmwareId),
      ]);
      const app = await appOf(job, release);
      const known = new Map(release ? [[job.firmwareId, release]] : []);
      const replacedApp = jobReplacedApp(steps);
      return {
        ...((await jobViews([job], known))[0] as JobView),
        allowDowngrade: jobAllowsDowngrade(steps),
        ...(replacedApp ? { replacedApp } : {}),
        ...(app ? { app } : {}),
        steps: steps.map(stepView),
      };
    },

    "job/cancel": async (request) => jobView(await runner.cancel(stringField(request, "id", "the job id"))),

    status: async () => {
      if (!deps.status) throw new RequestError("This server does not report its instances.");
      return deps.status();
    },

    ...rolloutHandlers(deps.rollouts, storage),
    ...(deps.provisioning
      ? provisioningHandlers(deps.provisioning)
      : {
          "devices/add": NO_PROVISIONING,
          "devices/rotate": NO_PROVISIONING,
          "devices/revoke": NO_PROVISIONING,
          "devices/allow-unsigned": NO_PROVISIONING,
          "devices/credentials": NO_PROVISIONING,
          "command-keys": NO_PROVISIONING,
          audit: NO_PROVISIONING,
        }),
  };
}
