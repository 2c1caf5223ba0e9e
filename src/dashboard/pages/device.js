// One device's page (#/device/<id>): its facts, trust, the update form, its jobs with their
// timelines and its reported history.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { ago, bytes, shortId, time } from "../format.js";
import { DeviceTrust, TrustWarnings } from "../trust.js";
import {
  chipOf,
  downgradeQuestion,
  ErrorText,
  html,
  isAppJob,
  JobProgress,
  releasesFor,
  statusText,
  TERMINAL,
} from "../ui.js";
import { appText, DeviceApp } from "./device-app.js";

function Timeline({ id, version }) {
  const [job, setJob] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", `/jobs/${encodeURIComponent(id)}`).then(setJob, setError);
  }, [id, version]);
  if (error) return html`<${ErrorText} error=${error} />`;
  if (!job) return null;
  return html`<ol class="timeline">
    ${job.steps.map((s) => html`<li class=${`step step-${s.kind}`}><time>${new Date(s.at).toLocaleTimeString()}</time> <span class="kind">${s.kind}</span> ${s.message}</li>`)}
  </ol>`;
}

export function DevicePage({
  id,
  devices,
  firmware,
  jobs,
  now,
  onUpdate,
  onCancel,
  credentials,
  base,
  onCredentials,
}) {
  const [detail, setDetail] = useState(null);
  const [error, setError] = useState(null);
  const [target, setTarget] = useState("");
  const [allowDowngrade, setAllowDowngrade] = useState(false);
  const [open, setOpen] = useState(null);
  const live = devices.get(id);
  const liveJob = live?.job ? jobs.get(live.job.id) : undefined;
  const phase = `${live?.lastSeen}:${live?.job?.id}:${liveJob?.state ?? live?.job?.state}`;
  useEffect(() => {
    api("GET", `/devices/${encodeURIComponent(id)}?history=20`).then((d) => {
      setDetail(d);
      setError(null);
    }, setError);
  }, [id, phase]);
  if (error) return html`<section><h2>${id}</h2><${ErrorText} error=${error} /></section>`;
  if (!detail) return html`<section><h2>${id}</h2><p>Loading…</p></section>`;
  const d = live ?? detail;
  // Only releases built for the device's chip: an ESP8266 is never offered an ESP32 image.
  const choices = releasesFor(d, firmware);
  const chip = chipOf(d, firmware);
  const chosen = target || (choices.find((f) => f.name === d.firmware?.name) ?? choices[0])?.id || "";
  const versionKey = `${liveJob?.state}:${liveJob?.attempt}`;
  const update = async () => {
    if (allowDowngrade) {
      const f = firmware.find((x) => x.id === chosen);
      const what = f ? `${f.name} ${f.version}` : chosen;
      if (!confirm(downgradeQuestion(`${what} on ${id}`))) return;
    }
    if (await onUpdate(id, chosen, allowDowngrade)) setAllowDowngrade(false);
  };
  return html`<section class="device-page">
    <h2>${id}</h2>
    <${TrustWarnings} device=${d} credentials=${credentials} base=${base} />
    <dl class="facts">
      <dt>Status</dt><dd class="device-status">${statusText(d, now)}</dd>
      <dt>Chip</dt><dd class="device-chip">${chip ?? "–"}</dd>
      <dt>App</dt><dd class="device-app">${appText(d) ?? "–"}</dd>
      <dt>Firmware</dt><dd>${d.firmware ? `${d.firmware.name} ${d.firmware.version}` : html`<span class="badge badge-unknown">unknown firmware</span>`} <code>${d.fw}</code></dd>
      <dt>MicroPython</dt><dd>${d.ver ?? "–"}</dd>
      <dt>Last seen</dt><dd>${ago(d.lastSeen, now)}</dd>
      <dt>IP</dt><dd>${d.ip ?? "–"}</dd>
      <dt>RSSI</dt><dd>${d.rssi ?? "–"}</dd>
      <dt>Battery</dt><dd>${d.vbat ?? "–"}</dd>
      <dt>Flash</dt><dd>${bytes(d.flash)}</dd>
    </dl>
    <${DeviceTrust} device=${d} credentials=${credentials} base=${base} onChanged=${onCredentials} />
    <${DeviceApp} device=${d} storeVersion=${firmware} busy=${Boolean(liveJob && !TERMINAL.has(liveJob.state))} onUpdate=${onUpdate} />
    <h3>Update</h3>
    ${
      liveJob && !TERMINAL.has(liveJob.state)
        ? html`<${JobProgress} job=${liveJob} device=${d} onCancel=${onCancel} app=${isAppJob(liveJob, firmware)} />`
        : html`<div class="toolbar">
            <select aria-label="Firmware to install" value=${chosen} onChange=${(e) => setTarget(e.target.value)}>
              ${choices.map((f) => html`<option value=${f.id}>${f.name} ${f.version}</option>`)}
            </select>
            <button disabled=${!chosen} onClick=${update}>Update ${id}</button>
          </div>
          <label class="check"><input type="checkbox" name="allowDowngrade" checked=${allowDowngrade} onChange=${(e) => setAllowDowngrade(e.target.checked)} /> Allow downgrade (even if the device runs something newer)</label>`
    }
    <h3>Jobs</h3>
    ${detail.jobs.length === 0 ? html`<p class="empty">No update jobs yet.</p>` : null}
    <ul class="jobs">
      ${detail.jobs.map((j) => {
        const current = jobs.get(j.id) ?? j;
        const shown = open === j.id || (open === null && j === detail.jobs[0]);
        return html`<li>
          <button class="link" onClick=${() => setOpen(shown ? "" : j.id)}>${j.id}</button> ${time(j.createdAt)}
          <${JobProgress} job=${current} device=${d} app=${isAppJob(current, firmware)} />
          ${d.app?.rolledBack?.job === j.id ? html`<div class="job-rollback">Rolled back on the device: ${d.app.rolledBack.why}</div>` : null}
          ${shown ? html`<${Timeline} id=${j.id} version=${j.id === liveJob?.job ? versionKey : current.state} />` : null}
        </li>`;
      })}
    </ul>
    <h3>History</h3>
    <div class="table-box"><table class="history">
      <thead><tr><th>When</th><th>Firmware</th><th>IP</th><th>RSSI</th><th>Battery</th><th>Wake</th></tr></thead>
      <tbody>
        ${detail.history.map(
          (e) =>
            html`<tr><td>${time(e.at)}</td><td><code>${shortId(e.state.fw)}</code></td><td>${e.state.ip}</td><td>${e.state.rssi ?? "–"}</td><td>${e.state.vbat ?? "–"}</td><td>${e.state.wake ?? "–"}${e.state.sleep ? `, sleeps ${e.state.sleep} s` : ""}</td></tr>`,
        )}
      </tbody>
    </table></div>
  </section>`;
}
