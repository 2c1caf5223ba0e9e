import htm from "htm";
import { h, render } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, api, LiveEvents } from "./api.js";
import { AuditPage } from "./audit.js";
import { ago, bytes, duration, rate, shortId, time } from "./format.js";
import { RolloutPage, RolloutsPage, rolloutFeed } from "./rollouts.js";
import {
  AddDevicePage,
  DeviceTrust,
  TrustBadges,
  TrustBanner,
  TrustWarnings,
  trustProblems,
} from "./trust.js";

const html = htm.bind(h);

/** Jobs kept in the page's live map at most (memory stays flat during long sessions). */
const MAX_LIVE_JOBS = 200;
/** After a device without a known credential reports, credentials are read again this much later (once). */
const CREDENTIALS_RELOAD_MS = 500;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "waiting", "retrying"]);

// ---- helpers -------------------------------------------------------------

function useNow(intervalMs = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

function useHashRoute() {
  const [hash, setHash] = useState(location.hash || "#/devices");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/devices");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  const parts = hash.replace(/^#\//, "").split("/").map(decodeURIComponent);
  return parts;
}

function jobId(job) {
  return job.job ?? job.id;
}

/** The newest firmware of each name (the store lists newest first). */
function newestByName(firmware) {
  const out = new Map();
  for (const f of firmware) if (!out.has(f.name)) out.set(f.name, f);
  return out;
}

/** The question asked before a request that may install an older firmware. */
function downgradeQuestion(what) {
  return `Allow a downgrade? This installs ${what} even where it is older than the firmware the device runs, which can bring back bugs and security holes a newer version fixed.`;
}

function statusText(device, now) {
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

function jobStateText(job, device) {
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

function ErrorText({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.message ?? String(error)}</div>`;
}

// ---- progress ------------------------------------------------------------

function JobProgress({ job, device, onCancel }) {
  const percent = job.state === "succeeded" ? 100 : (job.percent ?? 0);
  const pushing = job.state === "pushing";
  const left = pushing && job.rate > 0 ? ((job.total - job.bytes) / job.rate) * 1000 : null;
  const label = jobStateText(job, device);
  return html`<div class=${`job job-${job.state}`} data-job=${jobId(job)}>
    <div class="job-head">
      <span class="job-state">${label}</span>
      <span class="job-target">${job.firmware?.name} ${job.firmware?.version}</span>
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
    ${job.state === "failed" && job.error ? html`<div class="job-error">${job.error}</div>` : null}
  </div>`;
}

// ---- login ---------------------------------------------------------------

function Login({ onDone }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await api("POST", "/login", { json: { token } });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<main class="login">
    <h1>mpota</h1>
    <form onSubmit=${submit}>
      <label>Admin token
        <input type="password" name="token" autocomplete="current-password" value=${token} onInput=${(e) => setToken(e.target.value)} />
      </label>
      <p class="hint">The server printed it at its first start; it is in the file <code>admin-token</code> in its data directory (<code>mpota token show-path</code>).</p>
      <button type="submit">Log in</button>
      <${ErrorText} error=${error} />
    </form>
  </main>`;
}

// ---- devices -------------------------------------------------------------

const COLUMNS = [
  ["id", "Device"],
  ["status", "Status"],
  ["firmware", "Firmware"],
  ["lastSeen", "Last seen"],
  ["ip", "IP"],
  ["rssi", "RSSI"],
  ["vbat", "Battery"],
  ["job", "Update"],
];

function sortValue(device, key) {
  if (key === "firmware")
    return device.firmware ? `${device.firmware.name} ${device.firmware.version}` : `~${device.fw ?? ""}`;
  if (key === "job") return device.job?.state ?? "";
  return device[key] ?? "";
}

function DevicesPage({ devices, firmware, jobs, now, onUpdate, onCancel, credentials, base }) {
  const [filter, setFilter] = useState("");
  const [status, setStatus] = useState("all");
  const [sort, setSort] = useState({ key: "id", up: true });
  const newest = useMemo(() => newestByName(firmware), [firmware]);
  const rows = useMemo(() => {
    const text = filter.trim().toLowerCase();
    const list = [...devices.values()].filter((d) => {
      if (status !== "all" && d.status !== status) return false;
      if (!text) return true;
      return [d.id, d.ip, d.fw, d.firmware?.name, d.firmware?.version].some(
        (v) => v && String(v).toLowerCase().includes(text),
      );
    });
    list.sort((a, b) => {
      const x = sortValue(a, sort.key);
      const y = sortValue(b, sort.key);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return sort.up ? c : -c;
    });
    return list;
  }, [devices, filter, status, sort]);
  const head = (key, label) =>
    html`<th><button class="sort" onClick=${() => setSort({ key, up: sort.key === key ? !sort.up : true })}>${label}${sort.key === key ? (sort.up ? " ▲" : " ▼") : ""}</button></th>`;
  return html`<section>
    <div class="toolbar">
      <input type="search" placeholder="Filter by id, IP, firmware" aria-label="Filter devices" value=${filter} onInput=${(e) => setFilter(e.target.value)} />
      <select aria-label="Status" value=${status} onChange=${(e) => setStatus(e.target.value)}>
        <option value="all">every status</option>
        <option value="online">online</option>
        <option value="sleeping">sleeping</option>
        <option value="ota">OTA mode</option>
        <option value="offline">offline</option>
      </select>
      <span class="count">${rows.length} of ${devices.size} devices</span>
      <a class="button-link add" href="#/add-device">Add device</a>
    </div>
    <${TrustBanner} devices=${devices} credentials=${credentials} base=${base} />
    <table class="devices">
      <thead><tr>${COLUMNS.map(([key, label]) => head(key, label))}</tr></thead>
      <tbody>
        ${rows.map((d) => {
          const line = d.firmware ? newest.get(d.firmware.name) : undefined;
          const newer = line && line.id !== d.fw ? line : undefined;
          const job = d.job ? (jobs.get(d.job.id) ?? { ...d.job, id: d.job.id }) : undefined;
          return html`<tr data-device=${d.id}>
            <td><a href=${`#/device/${encodeURIComponent(d.id)}`}>${d.id}</a><${TrustBadges} problems=${trustProblems(d, credentials, base)} /></td>
            <td><span class=${`status status-${d.status ?? "unknown"}`}>${statusText(d, now)}</span></td>
            <td>
              ${d.firmware ? html`${d.firmware.name} ${d.firmware.version}` : html`<span class="badge badge-unknown" title="The store has no firmware with this identity">unknown firmware</span>`}
              <span class="fw" title=${d.fw ?? ""}> ${shortId(d.fw)}</span>
              ${newer ? html` <span class="badge badge-newer">${newer.version} available</span>` : null}
            </td>
            <td title=${time(d.lastSeen)}>${ago(d.lastSeen, now)}</td>
            <td>${d.ip ?? "–"}</td>
            <td>${d.rssi !== null && d.rssi !== undefined ? `${d.rssi} dBm` : "–"}</td>
            <td>${d.vbat !== null && d.vbat !== undefined ? `${d.vbat.toFixed(2)} V` : "–"}</td>
            <td class="update-cell">
              ${
                job && !TERMINAL.has(job.state)
                  ? html`<${JobProgress} job=${job} device=${d} onCancel=${onCancel} />`
                  : newer
                    ? html`<button class="small" onClick=${() => onUpdate(d.id, newer.id)}>Update to ${newer.version}</button>`
                    : null
              }
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
    ${devices.size === 0 ? html`<p class="empty">No device has reported yet. Devices appear when their agent publishes its state.</p>` : null}
  </section>`;
}

// ---- one device ----------------------------------------------------------

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

function DevicePage({
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
  const choices = firmware.filter((f) => f.id !== d.fw);
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
      <dt>Firmware</dt><dd>${d.firmware ? `${d.firmware.name} ${d.firmware.version}` : html`<span class="badge badge-unknown">unknown firmware</span>`} <code>${d.fw}</code></dd>
      <dt>MicroPython</dt><dd>${d.ver ?? "–"}</dd>
      <dt>Last seen</dt><dd>${ago(d.lastSeen, now)}</dd>
      <dt>IP</dt><dd>${d.ip ?? "–"}</dd>
      <dt>RSSI</dt><dd>${d.rssi ?? "–"}</dd>
      <dt>Battery</dt><dd>${d.vbat ?? "–"}</dd>
      <dt>Flash</dt><dd>${bytes(d.flash)}</dd>
    </dl>
    <${DeviceTrust} device=${d} credentials=${credentials} base=${base} onChanged=${onCredentials} />
    <h3>Update</h3>
    ${
      liveJob && !TERMINAL.has(liveJob.state)
        ? html`<${JobProgress} job=${liveJob} device=${d} onCancel=${onCancel} />`
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
          <${JobProgress} job=${current} device=${d} />
          ${shown ? html`<${Timeline} id=${j.id} version=${j.id === liveJob?.job ? versionKey : current.state} />` : null}
        </li>`;
      })}
    </ul>
    <h3>History</h3>
    <table class="history">
      <thead><tr><th>When</th><th>Firmware</th><th>IP</th><th>RSSI</th><th>Battery</th><th>Wake</th></tr></thead>
      <tbody>
        ${detail.history.map(
          (e) =>
            html`<tr><td>${time(e.at)}</td><td><code>${shortId(e.state.fw)}</code></td><td>${e.state.ip}</td><td>${e.state.rssi ?? "–"}</td><td>${e.state.vbat ?? "–"}</td><td>${e.state.wake ?? "–"}${e.state.sleep ? `, sleeps ${e.state.sleep} s` : ""}</td></tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

// ---- firmware ------------------------------------------------------------

function Verdicts({ verdicts }) {
  if (!verdicts?.length) return null;
  return html`<ul class="verdicts">
    ${verdicts.map((v) => html`<li class=${`verdict verdict-${v.level}`}><strong>${v.level}</strong> ${v.check}: ${v.message}</li>`)}
  </ul>`;
}

function Upload({ onAdded }) {
  const [file, setFile] = useState(null);
  const [name, setName] = useState("");
  const [version, setVersion] = useState("");
  const [notes, setNotes] = useState("");
  const [flash, setFlash] = useState("1048576");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const [over, setOver] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    if (!file) return;
    setBusy(true);
    setResult(null);
    const query = new URLSearchParams({ name, version, filename: file.name, flash });
    if (notes) query.set("notes", notes);
    try {
      const added = await api("POST", `/firmware?${query}`, {
        body: file,
        headers: { "content-type": "application/octet-stream" },
      });
      setResult({ ok: true, added });
      onAdded();
    } catch (e) {
      setResult({ ok: false, error: e, verdicts: e instanceof ApiError ? e.body.verdicts : undefined });
    } finally {
      setBusy(false);
    }
  };
  const drop = (event) => {
    event.preventDefault();
    setOver(false);
    const f = event.dataTransfer?.files?.[0];
    if (f) setFile(f);
  };
  return html`<form class="upload" onSubmit=${submit}>
    <div class=${`dropzone${over ? " over" : ""}`} onDragOver=${(e) => {
      e.preventDefault();
      setOver(true);
    }} onDragLeave=${() => setOver(false)} onDrop=${drop}>
      <p>${file ? html`<strong class="chosen">${file.name}</strong> (${bytes(file.size)})` : "Drop firmware-ota.bin or a .ota file here, or"}</p>
      <label class="file">Choose a file<input type="file" name="file" accept=".bin,.ota" onChange=${(e) => setFile(e.target.files[0] ?? null)} /></label>
    </div>
    <div class="fields">
      <label>Name <input name="name" required placeholder="sensor" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
      <label>Version <input name="version" required placeholder="1.4.2" value=${version} onInput=${(e) => setVersion(e.target.value)} /></label>
      <label>Flash of the devices
        <select name="flash" value=${flash} onChange=${(e) => setFlash(e.target.value)}>
          <option value="524288">512 KiB</option><option value="1048576">1 MiB</option><option value="2097152">2 MiB</option><option value="4194304">4 MiB</option>
        </select>
      </label>
      <label class="notes">Release notes <textarea name="notes" rows="3" value=${notes} onInput=${(e) => setNotes(e.target.value)}></textarea></label>
    </div>
    <button type="submit" disabled=${!file || busy}>${busy ? "Checking…" : "Check and add"}</button>
    ${
      result?.ok
        ? html`<div class="result ok" role="status">Added ${result.added.firmware.name} ${result.added.firmware.version} (${result.added.firmware.id}).<${Verdicts} verdicts=${result.added.verdicts} /></div>`
        : null
    }
    ${
      result && !result.ok
        ? html`<div class="result refused" role="alert"><strong>Refused; nothing was stored.</strong><pre>${result.error.message}</pre><${Verdicts} verdicts=${result.verdicts} /></div>`
        : null
    }
  </form>`;
}

function FirmwarePage({ firmware, devices, onChanged, onLine, selected }) {
  const [error, setError] = useState(null);
  // #/firmware/<identity> (Home Assistant's release link) marks that firmware's row.
  useEffect(() => {
    if (selected)
      document
        .querySelector(`tr[data-firmware="${CSS.escape(selected)}"]`)
        ?.scrollIntoView({ block: "center" });
  }, [selected, firmware.length]);
  const [concurrency, setConcurrency] = useState(2);
  const [allowDowngrade, setAllowDowngrade] = useState(false);
  const [lineResult, setLineResult] = useState(null);
  const newest = newestByName(firmware);
  const remove = async (f) => {
    if (!confirm(`Remove ${f.name} ${f.version} from the store?`)) return;
    try {
      await api("DELETE", `/firmware/${f.id}`);
      onChanged();
    } catch (e) {
      setError(e);
    }
  };
  const line = async (f) => {
    setError(null);
    if (allowDowngrade && !confirm(downgradeQuestion(`${f.name} ${f.version} on every device of the line`)))
      return;
    try {
      setLineResult(await onLine(f.id, concurrency, allowDowngrade));
      setAllowDowngrade(false);
    } catch (e) {
      setError(e);
    }
  };
  const behind = (f) =>
    [...devices.values()].filter((d) => d.firmware?.name === f.name && d.fw !== f.id).length;
  return html`<section>
    <h2>Add firmware</h2>
    <${Upload} onAdded=${onChanged} />
    <h2>Store</h2>
    <${ErrorText} error=${error} />
    ${lineResult ? html`<div class="result ok" role="status">Updating ${lineResult.firmware.name} to ${lineResult.firmware.version} as rollout ${lineResult.rollout.id}: ${lineResult.rollout.counts.total} devices, ${lineResult.rollout.counts.done} already on it, at most ${lineResult.concurrency} at a time.</div>` : null}
    <label class="concurrency">At most <input type="number" min="1" max="20" value=${concurrency} onInput=${(e) => setConcurrency(Number(e.target.value))} /> devices at a time</label>
    <label class="check"><input type="checkbox" name="allowDowngrade" checked=${allowDowngrade} onChange=${(e) => setAllowDowngrade(e.target.checked)} /> Allow downgrade (also on devices that run something newer)</label>
    <table class="firmware">
      <thead><tr><th>Name</th><th>Version</th><th>Identity</th><th>Size</th><th>Build</th><th>Devices</th><th>Notes</th><th>Added</th><th></th></tr></thead>
      <tbody>
        ${firmware.map(
          (f) => html`<tr data-firmware=${f.id} class=${f.id === selected ? "selected" : ""}>
            <td>${f.name}</td><td>${f.version}</td><td><code title=${f.id}>${shortId(f.id)}</code></td><td>${bytes(f.size)}</td>
            <td>${f.build ?? "–"} ${f.micropython ?? ""}</td><td>${f.devices}</td><td class="notes">${f.notes ?? ""}</td><td>${time(f.addedAt)}</td>
            <td>
              ${newest.get(f.name) === f && behind(f) > 0 ? html`<button class="small" onClick=${() => line(f)}>Update all on ${f.name} (${behind(f)})</button>` : null}
              <button class="small danger" onClick=${() => remove(f)}>Remove</button>
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

// ---- jobs ----------------------------------------------------------------

function JobsPage({ devices, jobs, onCancel }) {
  const [list, setList] = useState([]);
  const [error, setError] = useState(null);
  const version = [...jobs.values()].map((j) => `${jobId(j)}:${j.state}`).join(",");
  useEffect(() => {
    api("GET", "/jobs?limit=50").then(setList, setError);
  }, [version]);
  return html`<section>
    <h2>Jobs</h2>
    <${ErrorText} error=${error} />
    <table class="jobs-table">
      <thead><tr><th>Job</th><th>Device</th><th>Created</th><th>Progress</th></tr></thead>
      <tbody>
        ${list.map((j) => {
          const current = jobs.get(j.id) ?? j;
          return html`<tr><td>${j.id}</td><td><a href=${`#/device/${encodeURIComponent(j.device)}`}>${j.device}</a></td><td>${time(j.createdAt)}</td>
            <td><${JobProgress} job=${current} device=${devices.get(j.device)} onCancel=${onCancel} /></td></tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

// ---- the app -------------------------------------------------------------

function Shell({ onLogout }) {
  const route = useHashRoute();
  const now = useNow();
  const [devices, setDevices] = useState(new Map());
  const [firmware, setFirmware] = useState([]);
  const [jobs, setJobs] = useState(new Map());
  // Provisioned devices by id (an id mapped to null: being read again); null when this server does
  // not list credentials.
  const [credentials, setCredentials] = useState(null);
  const [base, setBase] = useState("mpota");
  const [live, setLive] = useState("connecting");
  const [error, setError] = useState(null);

  const loadDevices = useCallback(
    () => api("GET", "/devices").then((list) => setDevices(new Map(list.map((d) => [d.id, d])))),
    [],
  );
  const loadFirmware = useCallback(() => api("GET", "/firmware").then(setFirmware), []);
  const loadJobs = useCallback(
    () => api("GET", "/jobs?active=true").then((list) => setJobs(new Map(list.map((j) => [j.id, j])))),
    [],
  );
  const known = useRef(null);
  const loadCredentials = useCallback(
    () =>
      api("GET", "/credentials").then(
        (list) => {
          known.current = new Map(list.map((c) => [c.device, c]));
          setCredentials(known.current);
        },
        (e) => {
          if (e instanceof ApiError && e.status === 401) throw e;
          setCredentials(null);
        },
      ),
    [],
  );
  const reload = useCallback(() => {
    Promise.all([loadDevices(), loadFirmware(), loadJobs(), loadCredentials()]).catch((e) => {
      if (e instanceof ApiError && e.status === 401) onLogout();
      else setError(e);
    });
  }, []);

  const events = useRef(null);
  // Credentials change by request only (here, the CLI, the bridge): read again on each navigation,
  // and soon after a device the list does not have reports (it was provisioned meanwhile).
  const credentialTimer = useRef(null);
  // Each id at most once: a device without a credential on an external broker reports at every wake.
  const asked = useRef(new Set());
  const newcomer = (id) => {
    if (!known.current || known.current.has(id) || asked.current.has(id)) return;
    if (asked.current.size >= 10_000) asked.current.clear();
    asked.current.add(id);
    // Not "not provisioned" before the list was read again: it may have been provisioned since.
    setCredentials((m) => (m && !m.has(id) ? new Map(m).set(id, null) : m));
    if (credentialTimer.current) return;
    credentialTimer.current = setTimeout(() => {
      loadCredentials()
        .catch(() => undefined)
        .finally(() => {
          credentialTimer.current = null;
        });
    }, CREDENTIALS_RELOAD_MS);
  };
  const path = route.join("/");
  const first = useRef(true);
  useEffect(() => {
    if (first.current) first.current = false;
    else loadCredentials().catch(() => undefined);
  }, [path]);
  useEffect(() => {
    api("GET", "/info").then(
      (info) => setBase(info.base),
      () => undefined,
    );
    reload();
    events.current = new LiveEvents((name, data) => {
      if (name === "device") {
        setDevices((m) => new Map(m).set(data.id, data));
        newcomer(data.id);
      } else if (name === "job")
        setJobs((m) => {
          const next = new Map(m);
          next.delete(data.job);
          next.set(data.job, data);
          while (next.size > MAX_LIVE_JOBS) next.delete(next.keys().next().value);
          return next;
        });
      else if (name === "firmware") {
        Promise.all([loadFirmware(), loadDevices()]).catch(setError);
      } else if (name === "reset") reload();
      rolloutFeed(name, data);
    }, setLive);
    return () => {
      events.current?.close();
      clearTimeout(credentialTimer.current);
    };
  }, []);

  const act = async (fn) => {
    setError(null);
    try {
      return await fn();
    } catch (e) {
      setError(e);
      throw e;
    }
  };
  /** Resolves true when the job was created; a refusal shows in the page's error line. */
  const onUpdate = (device, fw, allowDowngrade = false) =>
    act(async () => {
      const job = await api("POST", "/update", {
        json: { device, firmware: fw, ...(allowDowngrade ? { allowDowngrade: true } : {}) },
      });
      setJobs((m) => new Map(m).set(job.id, job));
      setDevices((m) => {
        const d = m.get(device);
        return d ? new Map(m).set(device, { ...d, job: { id: job.id, state: job.state } }) : m;
      });
    }).then(
      () => true,
      () => false,
    );
  const onCancel = (id) =>
    act(async () => {
      const job = await api("POST", `/jobs/${encodeURIComponent(id)}/cancel`);
      setJobs((m) => new Map(m).set(job.id, job));
    }).catch(() => undefined);
  const onLine = (fw, concurrency, allowDowngrade) =>
    api("POST", "/update/line", {
      json: { firmware: fw, concurrency, ...(allowDowngrade ? { allowDowngrade: true } : {}) },
    });
  const logout = async () => {
    await api("POST", "/logout").catch(() => undefined);
    events.current?.close();
    onLogout();
  };

  const [page, arg] = route;
  const props = { devices, firmware, jobs, now, onUpdate, onCancel, credentials, base };
  let body;
  if (page === "device" && arg)
    body = html`<${DevicePage} id=${arg} ...${props} onCredentials=${loadCredentials} />`;
  else if (page === "add-device")
    body = html`<${AddDevicePage} key=${arg ?? ""} initialId=${arg} onChanged=${loadCredentials} />`;
  else if (page === "audit") body = html`<${AuditPage} />`;
  else if (page === "firmware")
    body = html`<${FirmwarePage} firmware=${firmware} devices=${devices} onChanged=${() => reload()} onLine=${onLine} selected=${arg} />`;
  else if (page === "jobs") body = html`<${JobsPage} devices=${devices} jobs=${jobs} onCancel=${onCancel} />`;
  else if (page === "rollouts") body = html`<${RolloutsPage} firmware=${firmware} devices=${devices} />`;
  else if (page === "rollout" && arg) body = html`<${RolloutPage} id=${arg} />`;
  else body = html`<${DevicesPage} ...${props} />`;
  return html`<div class="shell">
    <header>
      <strong class="brand">mpota</strong>
      <nav>
        <a href="#/devices" class=${page === "devices" || page === "device" || page === "add-device" || !page ? "active" : ""}>Devices</a>
        <a href="#/firmware" class=${page === "firmware" ? "active" : ""}>Firmware</a>
        <a href="#/jobs" class=${page === "jobs" ? "active" : ""}>Jobs</a>
        <a href="#/rollouts" class=${page === "rollouts" || page === "rollout" ? "active" : ""}>Rollouts</a>
        <a href="#/audit" class=${page === "audit" ? "active" : ""}>Audit</a>
      </nav>
      <span class=${`live live-${live}`} title="The event stream">${live}</span>
      <button class="small" onClick=${logout}>Log out</button>
    </header>
    <main>
      <${ErrorText} error=${error} />
      ${body}
    </main>
  </div>`;
}

function App() {
  const [session, setSession] = useState(null);
  const check = () =>
    api("GET", "/session").then(setSession, (e) => setSession({ authenticated: false, error: e.message }));
  useEffect(() => {
    void check();
  }, []);
  if (!session) return html`<p class="loading">Loading…</p>`;
  if (!session.authenticated) return html`<${Login} onDone=${check} />`;
  return html`<${Shell} onLogout=${() => setSession({ authenticated: false })} />`;
}

render(html`<${App} />`, document.getElementById("app"));
