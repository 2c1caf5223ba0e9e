import type { DeviceRecord, FirmwareRecord, JobRecord, JobStep } from "../storage/storage.ts";
import type {
  DeviceView,
  FirmwareRef,
  FirmwareView,
  JobProgressMessage,
  JobStepView,
  JobView,
} from "./api.ts";

/** Records as the API shows them. Pure functions: one source of truth for the CLI and any other client. */

export function jobPercent(job: JobRecord): number {
  if (job.phase === "succeeded") return 100;
  const { bytes, total } = job.progress;
  return total > 0 ? Math.min(100, Math.floor((bytes * 100) / total)) : 0;
}

/** An app job's files staged of the release's, when its progress counts them. */
function filesOf(job: JobRecord): { files?: number; of?: number } {
  const { files, of } = job.progress;
  return files !== undefined && of !== undefined ? { files, of } : {};
}

export function jobView(job: JobRecord): JobView {
  return {
    id: job.id,
    device: job.deviceId,
    firmware: {
      id: job.firmwareId,
      name: job.firmwareName,
      version: job.firmwareVersion,
      size: job.firmwareSize,
    },
    state: job.phase,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    percent: jobPercent(job),
    bytes: job.progress.bytes,
    total: job.progress.total,
    rate: job.progress.rate,
    retransmits: job.progress.retransmits,
    ...filesOf(job),
    target: job.targetIp === null ? null : `${job.targetIp}:${job.targetPort}`,
    error: job.error,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    finishedAt: job.finishedAt,
    dueAt: job.dueAt,
  };
}

export function stepView(step: JobStep): JobStepView {
  return { at: step.at, kind: step.kind, message: step.message, data: step.data };
}

export function jobProgressMessage(job: JobRecord, at: number): JobProgressMessage {
  return {
    job: job.id,
    device: job.deviceId,
    firmware: { id: job.firmwareId, name: job.firmwareName, version: job.firmwareVersion },
    state: job.phase,
    percent: jobPercent(job),
    bytes: job.progress.bytes,
    total: job.progress.total,
    rate: job.progress.rate,
    retransmits: job.progress.retransmits,
    ...filesOf(job),
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    error: job.error,
    updatedAt: at,
  };
}

export function firmwareRef(record: FirmwareRecord): FirmwareRef {
  return { id: record.id, name: record.name, version: record.version };
}

/** `kind`: its release kind, the chip it is built for and the chips its kind serves (the caller knows the kinds). */
export function firmwareView(
  record: FirmwareRecord,
  devices: number,
  kind: { kind: string; target: string; chips: string[] | null },
): FirmwareView {
  return {
    ...firmwareRef(record),
    size: record.size,
    notes: record.notes,
    addedAt: record.addedAt,
    micropython: record.micropython,
    build: record.build,
    kind: kind.kind,
    target: kind.target,
    chips: kind.chips,
    checks: record.checks,
    devices,
  };
}

export function deviceView(
  device: DeviceRecord,
  firmware: ReadonlyMap<string, FirmwareRecord>,
  activeJob: JobRecord | undefined,
): DeviceView {
  const s = device.state;
  const known = s ? firmware.get(s.fw) : undefined;
  return {
    id: device.id,
    status: device.status,
    statusAt: device.statusAt,
    firstSeen: device.firstSeen,
    lastSeen: device.lastSeen,
    lastStateAt: device.lastStateAt,
    nextWakeAt: device.nextWakeAt,
    fw: s?.fw ?? null,
    firmware: known ? firmwareRef(known) : null,
    v: s ? (s.v ?? 1) : null,
    chip: s?.chip ?? null,
    ver: s?.ver ?? null,
    ip: s?.ip ?? null,
    rssi: s?.rssi ?? null,
    vbat: s?.vbat ?? null,
    mem: s?.mem ?? null,
    flash: s?.flash ?? null,
    wake: s?.wake ?? null,
    sleep: s?.sleep ?? null,
    job: activeJob ? { id: activeJob.id, state: activeJob.phase } : null,
    app: s?.app
      ? {
          name: s.app.name ?? null,
          version: s.app.ver ?? null,
          id: s.app.id ?? null,
          board: s.app.board ?? null,
          free: s.app.free ?? null,
          rolledBack: s.app.rb ?? null,
        }
      : null,
  };
}
