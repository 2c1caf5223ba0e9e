import type { HaUpdateConfig, HaUpdateState } from "../api/ha-entity.ts";
import type { Topics } from "../api/topics.ts";
import { APP_KIND } from "../releases/app-kind.ts";
import type { AppReleases } from "../releases/app-releases.ts";
import type { ReleaseKinds } from "../releases/release-kind.ts";
import { compareVersions } from "../releases/version-order.ts";
import type { DeviceRecord, FirmwareRecord, JobRecord, Storage } from "../storage/storage.ts";

/** Most manifests' board lists kept in memory (a release's manifest never changes under its identity). */
const MAX_CACHED_BOARDS = 4096;

export interface AppEntityDeps {
  storage: Storage;
  topics: Topics;
  kinds: ReleaseKinds;
  apps: AppReleases;
}

/** What a device reports of its app, when it names one (a board with the loader but no app yet does not). */
export function reportedApp(device: DeviceRecord): { name: string; ver: string; board?: string } | undefined {
  const app = device.state?.app;
  if (app?.name === undefined || app.ver === undefined) return undefined;
  return { name: app.name, ver: app.ver, ...(app.board !== undefined ? { board: app.board } : {}) };
}

/**
 * The app half of Home Assistant's entities: a second `update` entity per
 * device that reports an app, beside the firmware one. Its latest version is
 * the newest stored app release of the same name for the device's board.
 */
export class AppEntity {
  private readonly boards = new Map<string, readonly string[]>();

  constructor(private readonly d: AppEntityDeps) {}

  /** Whether a job installs an app release (the firmware entity leaves those to this one). */
  async isAppJob(job: JobRecord): Promise<boolean> {
    const release = await this.d.storage.firmware.get(job.firmwareId);
    return release !== undefined && this.d.kinds.of(release).name === APP_KIND;
  }

  /** The newest app release of `name` whose manifest lists `board` (any board when the device does not say). */
  async latest(name: string, board: string | undefined): Promise<FirmwareRecord | undefined> {
    const rows = (await this.d.storage.firmware.findByName(name)).filter(
      (r) => this.d.kinds.of(r).name === APP_KIND,
    );
    let best: FirmwareRecord | undefined;
    for (const row of rows) {
      if (board !== undefined && !(await this.boardsOf(row.id)).includes(board)) continue;
      if (best === undefined || compareVersions(row.version, best.version) > 0) best = row;
    }
    return best;
  }

  /** The discovery config: the firmware entity's device and availability, its own topics and id. */
  config(firmware: HaUpdateConfig, id: string, prefixKey: string): HaUpdateConfig {
    const { device_class: _class, ...rest } = firmware;
    return {
      ...rest,
      name: "App",
      unique_id: `mpota_${prefixKey}_app`,
      state_topic: this.d.topics.haAppState(id),
      command_topic: this.d.topics.haAppInstall(id),
    };
  }

  /** The entity state; undefined when the device reports no named app. */
  async state(
    device: DeviceRecord,
    job: JobRecord | undefined,
    dashboardUrl: string | undefined,
    activePhases: ReadonlySet<string>,
    percentOf: (job: JobRecord) => number,
  ): Promise<HaUpdateState | undefined> {
    const app = reportedApp(device);
    if (app === undefined) return undefined;
    const latest = await this.latest(app.name, app.board);
    // Home Assistant offers an install when latest differs from installed: only a newer release is offered.
    const newer = latest !== undefined && compareVersions(latest.version, app.ver) > 0 ? latest : undefined;
    const appJob = job !== undefined && (await this.isAppJob(job)) ? job : undefined;
    const state: HaUpdateState = {
      installed_version: app.ver,
      latest_version: newer ? newer.version : app.ver,
      title: app.name,
      in_progress: appJob !== undefined,
      update_percentage: appJob && activePhases.has(appJob.phase) ? percentOf(appJob) : null,
    };
    const rolledBack = device.state?.app?.rb;
    const notes = rolledBack
      ? `The last update (job ${rolledBack.job}) was rolled back: ${rolledBack.why}`
      : (newer?.notes ?? null);
    if (notes) state.release_summary = notes;
    if (dashboardUrl) {
      state.release_url = `${dashboardUrl}#/${newer ? `apps/${newer.id}` : `device/${encodeURIComponent(device.id)}`}`;
    }
    return state;
  }

  private async boardsOf(id: string): Promise<readonly string[]> {
    const known = this.boards.get(id);
    if (known !== undefined) return known;
    let boards: readonly string[];
    try {
      boards = (await this.d.apps.manifestOf(id)).boards;
    } catch {
      // A release whose manifest cannot be read is offered to no board (the job would refuse it too).
      return [];
    }
    if (this.boards.size >= MAX_CACHED_BOARDS) this.boards.clear();
    this.boards.set(id, boards);
    return boards;
  }
}
