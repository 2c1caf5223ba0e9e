// The dashboard's shared UI: the template tag, the error line, the clock, and the words and the
// progress bar for devices and jobs that several pages show.
import htm from "htm";
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import { bytes, duration, rate } from "./format.js";

export const html = htm.bind(h);

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "waiting", "retrying"]);

/** The time now, again every `intervalMs` (for "5 s ago" and countdowns). */
export function useNow(intervalMs = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

export function jobId(job) {
  return job.job ?? job.id;
}

/**
 * The chip a device runs: the one it reports (agents of contract v3), else the
 * one the firmware it runs is built for, else null (unknown: every release is offered,
 * and the server refuses one for another chip).
 */
export function chipOf(device, firmware) {
  return device.chip ?? firmware.find((f) => f.id === device.fw)?.target ?? null;
}

/** Releases a device can take: not the one it runs, and built for its chip when that is known. */
export function releasesFor(device, firmware) {
  const chip = chipOf(device, firmware);
  return firmware.filter(
    (f) => f.kind !== "app" && f.id !== device.fw && (chip === null || f.target === chip),
  );
}

/**
 * Why `release` cannot go to `device`, or null when it can as far as the page knows: the chips
 * its kind serves (the release view's `chips`, the kind's own declaration; null: any chip, an app
 * release) do not hold the device's chip. The server refuses the same device with its own words.
 */
export function notEligibleReason(device, release, firmware) {
  if (!release?.chips) return null;
  const chip = chipOf(device, firmware);
  if (chip === null || release.chips.includes(chip)) return null;
  return `its chip is ${chip}; ${release.name} ${release.version} is for ${release.chips.join(", ")} only`;
}

/** The newest release of each line for each chip (the store lists newest first), by "name chip". */
export function newestByLine(firmware) {
  const out = new Map();
  for (const f of firmware) {
    if (f.kind === "app") continue;
    const key = `${f.name} ${f.target}`;
    if (!out.has(key)) out.set(key, f);
  }
  return out;
}

/** The question asked before a request that may install an older firmware. */
export function downgradeQuestion(what) {
  return `Allow a downgrade? This installs ${what} even where it is older than the firmware the device runs, which can bring back bugs and security holes a newer version fixed.`;
}

export function statusText(device, now) {
  switch (device.status) {
    case "online":
      return "online";
    case "sleeping":
      if (device.nextWakeAt) {
        const ms = device.nextWakeAt - now;
        return ms > 0
          ? `sleeping, next wake in ${duration(ms)}`
          : `sleeping, wake overdue by ${duration(-ms)}`;
      }
      return "sleeping";
    case "ota":
      return "OTA mode";
    case "offline":
      return "offline";
    default:
      return "unknown";
  }
}

function jobStateText(job, device, app) {
  // An app's device fetches the files itself, staying in its running app.
  if (app && job.state === "pushing") return "device fetching the changed files";
  if (app && job.state === "ready") return "device getting ready";
  if (app && job.state === "verifying") return "verifying: waiting for the device to run the new app";
  switch (job.state) {
    case "queued":
      return "queued";
    case "waiting":
      return device && device.status !== "online" ? "scheduled, waiting for wake" : "waiting for the device";
    case "ready":
      return "device resetting into OTA mode";
    case "pushing":
      return "pushing";
    case "verifying":
      return "verifying: waiting for the device to report";
    case "recovering":
      return "recovering: waiting for the receiver to reset";
    case "retrying":
      return "retrying";
    case "succeeded":
      return "done";
    case "failed":
      return "failed";
    case "cancelled":
      return "cancelled";
    default:
      return job.state;
  }
}

export function ErrorText({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.message ?? String(error)}</div>`;
}

/** Whether a job installs an app release (the store's list of releases says which kind it is). */
export function isAppJob(job, firmware) {
  const id = job.firmware?.id;
  return id !== undefined && firmware.some((f) => f.id === id && f.kind === "app");
}

/** An app job's numbers: files when the device's progress counts them, bytes always. */
function appNumbers(job) {
  const files =
    typeof job.files === "number" && typeof job.of === "number" && job.of > 0
      ? `${job.files} of ${job.of} files · `
      : "";
  return `${files}${bytes(job.bytes)} of ${bytes(job.total)}`;
}

/**
 * A job's state, progress bar and numbers, with Cancel while it has not reached the device. `app`:
 * the job installs an app release (the device fetches the files itself: files and bytes, no rate).
 */
export function JobProgress({ job, device, onCancel, app = false }) {
  const percent = job.state === "succeeded" ? 100 : (job.percent ?? 0);
  const pushing = job.state === "pushing" && !app;
  const fetching = app && !TERMINAL.has(job.state) && job.total > 0;
  const left = pushing && job.rate > 0 ? ((job.total - job.bytes) / job.rate) * 1000 : null;
  const label = jobStateText(job, device, app);
  return html`<div class=${`job job-${job.state}`} data-job=${jobId(job)}>
    <div class="job-head">
      <span class="job-state">${label}</span>
      <span class="job-target">${app ? "app " : ""}${job.firmware?.name} ${job.firmware?.version}</span>
      ${onCancel && CANCELLABLE.has(job.state) ? html`<button class="small" onClick=${() => onCancel(jobId(job))}>Cancel</button>` : null}
    </div>
    ${
      !TERMINAL.has(job.state) || job.state === "succeeded"
        ? html`<div class="bar" role="progressbar" aria-valuenow=${percent} aria-valuemin="0" aria-valuemax="100">
            <div class="fill" style=${`width:${percent}%`}></div>
            <span class="bar-text">${percent}%</span>
          </div>`
        : null
    }
    ${
      pushing
        ? html`<div class="job-numbers">${bytes(job.bytes)} of ${bytes(job.total)} · ${rate(job.rate)}${
            left !== null ? html` · <span class="eta">${duration(left)} left</span>` : null
          }${job.retransmits ? ` · ${job.retransmits} retransmitted` : ""}</div>`
        : null
    }
    ${fetching ? html`<div class="job-numbers app-numbers">${appNumbers(job)}</div>` : null}
    ${job.state === "failed" && job.error ? html`<div class="job-error">${job.error}</div>` : null}
  </div>`;
}
