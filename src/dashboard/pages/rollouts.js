// The Rollouts pages: the list, one rollout with its groups, and the form that creates one.
// Every number comes from the server's rollout views (GET /api/v1/rollouts...), the same as
// `mpota rollout show --json`; live changes arrive as `rollout` events on the page's one stream.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { bytes, duration, time } from "../format.js";
import { ErrorText, html } from "../ui.js";
import { eligibility, NotEligible } from "./rollout-eligible.js";

/** Rollouts the list page keeps (the API's default page). */
const LIST_LIMIT = 50;
/** Events and device rows the rollout page shows; the API has the rest. */
const EVENTS_SHOWN = 30;
const DEVICES_SHOWN = 200;
/** The rollout page reloads its devices and events at most this often while events arrive. */
const DETAIL_RELOAD_MS = 1000;
const ACTIVE = new Set(["scheduled", "running", "paused"]);
/** Bar segments, left to right. */
const SEGMENTS = ["done", "verifying", "pushing", "scheduled", "overdue", "failed", "skipped", "cancelled"];
/** Always listed under a bar; the others only when there are some. */
const MAIN_COUNTS = ["pending", "scheduled", "pushing", "verifying", "done", "failed"];
const MORE_COUNTS = ["overdue", "skipped", "cancelled"];

// ---- live events ---------------------------------------------------------

const listeners = new Set();

/** Hands the stream's events to the rollout pages: a view for `rollout`, null for `reset` (load again). */
export function rolloutFeed(name, data) {
  if (name !== "rollout" && name !== "reset") return;
  for (const listener of listeners) listener(name === "rollout" ? data : null);
}

function useRolloutFeed(onView) {
  const latest = useRef(onView);
  latest.current = onView;
  useEffect(() => {
    const listener = (view) => latest.current(view);
    listeners.add(listener);
    return () => listeners.delete(listener);
  }, []);
}

// ---- words ----------------------------------------------------------------

function rolloutTitle(r) {
  return r.name ?? r.id;
}

function selectorText(selector) {
  if (selector.kind === "tag") return `tag ${selector.tag}`;
  if (selector.kind === "line") return `line ${selector.line}`;
  const list = selector.devices;
  return list.length <= 3 ? list.join(", ") : `${list.slice(0, 3).join(", ")} and ${list.length - 3} more`;
}

function stateText(r, now) {
  switch (r.state) {
    case "scheduled":
      return r.startAt > now ? `scheduled, starts in ${duration(r.startAt - now)}` : "scheduled";
    case "running":
      return `running, group ${r.currentGroup + 1} of ${r.groups.length}`;
    default:
      return r.state;
  }
}

const PAUSE_KIND = {
  // A pause by hand says so in its reason.
  manual: null,
  errors: "too many failures",
  success: "a group stayed below its success threshold",
  approval: "waiting for approval",
};

const RESUME_HINT = {
  manual: "Resume gives the waiting devices their turn again.",
  errors:
    "Resume accepts the failures so far and goes on (the error thresholds count from there); Abort ends the rollout.",
  success: "Resume lets the group through as it is and starts the next one; Abort ends the rollout.",
  approval: "Resume starts the next group.",
};

function groupTitle(g, count) {
  const size = `${g.size} device${g.size === 1 ? "" : "s"}`;
  const spec = /^\d+$/.test(g.spec) ? "" : ` (${g.spec})`;
  return `Group ${g.index + 1} of ${count}: ${size}${spec}`;
}

function thresholdsText(g, onError) {
  const verb = onError === "abort" ? "aborts" : "pauses";
  return `next group when ≥ ${g.successThreshold} % verified · ${verb} when > ${g.errorThreshold} % of finished devices failed (from ${g.minExecuted} finished)${g.approve ? " · waits for approval" : ""}`;
}

function doneText(counts) {
  const parts = [`${counts.done} of ${counts.total} done`];
  if (counts.failed) parts.push(`${counts.failed} failed`);
  return parts.join(", ");
}

// ---- progress --------------------------------------------------------------

/** One bar split by where the devices are. */
function StateBar({ counts }) {
  const total = counts.total || 1;
  return html`<div class="rbar" role="img" aria-label=${doneText(counts)}>
    ${SEGMENTS.map((k) =>
      counts[k] > 0
        ? html`<div class=${`seg seg-${k}`} style=${`width:${(counts[k] / total) * 100}%`} title=${`${counts[k]} ${k}`}></div>`
        : null,
    )}
    <span class="bar-text">${doneText(counts)}</span>
  </div>`;
}

function Counts({ counts }) {
  const keys = [...MAIN_COUNTS, ...MORE_COUNTS.filter((k) => counts[k] > 0)];
  return html`<ul class="state-counts">
    ${keys.map((k) => html`<li class=${`count-${k}`} data-count=${k}><span class="swatch"></span>${k} <strong>${counts[k]}</strong></li>`)}
  </ul>`;
}

// ---- the list ---------------------------------------------------------------

export function RolloutsPage({ firmware, devices }) {
  const [list, setList] = useState([]);
  const [error, setError] = useState(null);
  const [creating, setCreating] = useState(false);
  const now = Date.now();
  const load = () => api("GET", `/rollouts?limit=${LIST_LIMIT}`).then(setList, setError);
  useEffect(() => {
    void load();
  }, []);
  useRolloutFeed((view) => {
    if (!view) {
      void load();
      return;
    }
    setList((old) => {
      const at = old.findIndex((r) => r.id === view.id);
      if (at >= 0) return old.map((r, i) => (i === at ? view : r));
      return [view, ...old].slice(0, LIST_LIMIT);
    });
  });
  return html`<section class="rollouts-page">
    <div class="toolbar">
      <h2 class="page-title">Rollouts</h2>
      <button class="small" aria-expanded=${creating} onClick=${() => setCreating(!creating)}>${creating ? "Close the form" : "New rollout"}</button>
    </div>
    ${
      creating
        ? html`<${CreateRollout} firmware=${firmware} devices=${devices} onCreated=${(r) => {
            location.hash = `#/rollout/${encodeURIComponent(r.id)}`;
          }} />`
        : null
    }
    <${ErrorText} error=${error} />
    <div class="table-box"><table class="rollouts">
      <thead><tr><th>Rollout</th><th>Firmware</th><th>Devices</th><th>State</th><th>Progress</th><th>Created</th></tr></thead>
      <tbody>
        ${list.map(
          (r) => html`<tr data-rollout=${r.id}>
            <td><a href=${`#/rollout/${encodeURIComponent(r.id)}`}>${rolloutTitle(r)}</a>${r.name ? html` <span class="fw">${r.id}</span>` : null}</td>
            <td>${r.firmware.name} ${r.firmware.version}</td>
            <td>${selectorText(r.selector)}</td>
            <td><span class=${`rollout-state state-${r.state}`}>${stateText(r, now)}</span>${r.state === "paused" && r.reason ? html`<div class="reason-short">${r.reason}</div>` : null}</td>
            <td class="progress-cell"><${StateBar} counts=${r.counts} /></td>
            <td>${time(r.createdAt)}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>
    ${list.length === 0 && !error ? html`<p class="empty">No rollouts yet. A rollout updates a few devices first, then more, and pauses by itself when too many fail.</p>` : null}
  </section>`;
}

// ---- the form ---------------------------------------------------------------

/** The box that allows an app release to replace a board's app of another name (replaceApp). */
const REPLACE_APP_BOX = "Replace another app if a board runs one";

function numberOrUndefined(text) {
  return text.trim() === "" ? undefined : Number(text);
}

/** The ids typed into the form's list, in order. */
function deviceIds(text) {
  return text
    .split(/[\s,]+/)
    .map((d) => d.trim())
    .filter((d) => d !== "");
}

export function CreateRollout({ firmware, devices, onCreated }) {
  const lines = [...new Set(firmware.map((f) => f.name))];
  const [form, setForm] = useState({
    firmware: firmware[0]?.id ?? "",
    by: "devices",
    devices: "",
    tag: "",
    line: lines[0] ?? "",
    groups: "1, 10%, rest",
    success: "100",
    errors: "20",
    concurrency: "10",
    start: "",
    allowDowngrade: false,
    replaceApp: false,
    onError: "pause",
    name: "",
  });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const set = (key) => (event) =>
    setForm({ ...form, [key]: event.target.type === "checkbox" ? event.target.checked : event.target.value });
  const chosenFirmware = form.firmware || firmware[0]?.id || "";
  // Only an app release can replace a board's app (one of another name): the box is offered for those.
  const release = firmware.find((f) => f.id === chosenFirmware);
  const isApp = release?.kind === "app";
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const request = {
      firmware: chosenFirmware,
      groups: form.groups,
      successThreshold: numberOrUndefined(form.success),
      errorThreshold: numberOrUndefined(form.errors),
      concurrency: numberOrUndefined(form.concurrency),
      allowDowngrade: form.allowDowngrade,
      onError: form.onError,
    };
    // Sent only when ticked: without it the server leaves such boards out, or refuses them by name.
    if (isApp && form.replaceApp) request.replaceApp = true;
    if (form.by === "devices") request.devices = deviceIds(form.devices);
    else if (form.by === "tag") request.tag = form.tag;
    else request.line = form.line || lines[0] || "";
    if (form.start) request.startAt = new Date(form.start).getTime();
    if (form.name.trim()) request.name = form.name.trim();
    try {
      onCreated(await api("POST", "/rollouts", { json: request }));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  // Only devices the chosen release can go to are offered; the others are listed with the reason.
  const { eligible, notEligible } = eligibility(devices, release, firmware);
  const named = new Set(form.by === "devices" ? deviceIds(form.devices) : []);
  return html`<form class="rollout-form" onSubmit=${submit}>
    <div class="fields">
      <label>Firmware
        <select name="firmware" value=${chosenFirmware} onChange=${set("firmware")}>
          ${firmware.map((f) => html`<option value=${f.id}>${f.name} ${f.version} (${bytes(f.size)})</option>`)}
        </select>
      </label>
      <label>Devices by
        <select name="by" value=${form.by} onChange=${set("by")}>
          <option value="devices">a list of devices</option>
          <option value="tag">tag</option>
          <option value="line">firmware line</option>
        </select>
      </label>
      ${
        form.by === "devices"
          ? html`<label class="wide">Device ids <input name="devices" list="rollout-known-devices" placeholder=${eligible.slice(0, 3).join(", ") || "kitchen, garden"} value=${form.devices} onInput=${set("devices")} />
              <datalist id="rollout-known-devices">${eligible.map((id) => html`<option value=${id}></option>`)}</datalist>
              <span class="hint field-hint">In this order: the first ones form the first group.</span>
            </label>`
          : form.by === "tag"
            ? html`<label>Tag <input name="tag" placeholder="garden" value=${form.tag} onInput=${set("tag")} /><span class="hint field-hint">Tag devices with <code>mpota rollout tag DEVICE TAG</code>.</span></label>`
            : html`<label>Firmware line
                <select name="line" value=${form.line || lines[0] || ""} onChange=${set("line")}>
                  ${lines.map((n) => html`<option value=${n}>${n}</option>`)}
                </select>
              </label>`
      }
    </div>
    <${NotEligible} release=${release} notEligible=${notEligible} named=${named} by=${form.by} />
    <div class="fields">
      <label>Groups <input name="groups" value=${form.groups} onInput=${set("groups")} /><span class="hint field-hint">A number of devices, a share, or rest: "1, 10%, rest".</span></label>
      <label>Success threshold (%) <input name="success" type="number" step="any" class="narrow" value=${form.success} onInput=${set("success")} /></label>
      <label>Error threshold (%) <input name="errors" type="number" step="any" class="narrow" value=${form.errors} onInput=${set("errors")} /></label>
      <label>When it is crossed
        <select name="onError" value=${form.onError} onChange=${set("onError")}>
          <option value="pause">pause</option>
          <option value="abort">abort</option>
        </select>
      </label>
      <label>Devices at once <input name="concurrency" type="number" class="narrow" value=${form.concurrency} onInput=${set("concurrency")} /></label>
      <label>Start <input name="start" type="datetime-local" value=${form.start} onInput=${set("start")} /><span class="hint field-hint">Empty: now.</span></label>
      <label>Name <input name="name" placeholder="optional" value=${form.name} onInput=${set("name")} /></label>
    </div>
    <label class="check"><input type="checkbox" name="allowDowngrade" checked=${form.allowDowngrade} onChange=${set("allowDowngrade")} /> Allow downgrade (install it on devices that run a newer version)</label>
    ${
      isApp
        ? html`<label class="check"><input type="checkbox" name="replaceApp" checked=${form.replaceApp} onChange=${set("replaceApp")} /> ${REPLACE_APP_BOX}<span class="hint field-hint"> A board that runs an app of another name loses that app: ${release.name} takes its place.</span></label>`
        : null
    }
    <button type="submit" disabled=${busy || !chosenFirmware}>${busy ? "Creating…" : "Create rollout"}</button>
    ${
      error
        ? html`<div class="result refused" role="alert"><strong>Refused; no rollout was created.</strong><pre>${error.message}</pre>${
            error.body?.cause === "app-replace"
              ? html`<p class="refused-hint">To replace those apps, tick “${REPLACE_APP_BOX}” above and create the rollout again; to keep them, leave those boards out.</p>`
              : null
          }</div>`
        : null
    }
  </form>`;
}

// ---- one rollout ------------------------------------------------------------

function Group({ group, count, onError }) {
  return html`<div class=${`group group-${group.state}`} data-group=${group.index}>
    <div class="group-head">
      <strong>${groupTitle(group, count)}</strong>
      <span class="group-state">${group.state}</span>
    </div>
    <div class="thresholds">${thresholdsText(group, onError)}</div>
    <${StateBar} counts=${group.counts} />
    <${Counts} counts=${group.counts} />
  </div>`;
}

export function RolloutPage({ id }) {
  const [detail, setDetail] = useState(null);
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const reload = useRef({ timer: undefined, last: 0 });
  const now = Date.now();
  const load = () =>
    api("GET", `/rollouts/${encodeURIComponent(id)}?events=${EVENTS_SHOWN}`).then((d) => {
      setDetail(d);
      setError(null);
    }, setError);
  useEffect(() => {
    setDetail(null);
    void load();
    return () => clearTimeout(reload.current.timer);
  }, [id]);
  // The view in an event is shown at once; the devices and events follow, at most once a second.
  const reloadSoon = () => {
    const r = reload.current;
    if (r.timer !== undefined) return;
    const wait = Math.max(0, r.last + DETAIL_RELOAD_MS - Date.now());
    r.timer = setTimeout(() => {
      r.timer = undefined;
      r.last = Date.now();
      void load();
    }, wait);
  };
  useRolloutFeed((view) => {
    if (!view) {
      void load();
      return;
    }
    if (!detail || view.id !== detail.id) return;
    setDetail((d) => (d ? { ...d, ...view } : d));
    reloadSoon();
  });
  const act = async (action, question) => {
    if (question && !confirm(question)) return;
    setBusy(true);
    setActionError(null);
    try {
      const view = await api("POST", `/rollouts/${encodeURIComponent(detail.id)}/${action}`);
      setDetail((d) => ({ ...d, ...view }));
      reloadSoon();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  if (error) return html`<section><h2>Rollout ${id}</h2><${ErrorText} error=${error} /></section>`;
  if (!detail) return html`<section><h2>Rollout ${id}</h2><p>Loading…</p></section>`;
  const r = detail;
  const active = ACTIVE.has(r.state);
  const shown = r.devices.slice(0, DEVICES_SHOWN);
  return html`<section class="rollout-page" data-rollout=${r.id}>
    <p class="crumbs"><a href="#/rollouts">Rollouts</a></p>
    <div class="rollout-head">
      <h2 class="page-title">${rolloutTitle(r)}</h2>
      <span class=${`rollout-state state-${r.state}`}>${stateText(r, now)}</span>
      <span class="spacer"></span>
      ${r.state === "scheduled" || r.state === "running" ? html`<button disabled=${busy} onClick=${() => act("pause")}>Pause</button>` : null}
      ${r.state === "paused" ? html`<button disabled=${busy} onClick=${() => act("resume")}>Resume</button>` : null}
      ${
        active
          ? html`<button class="danger" disabled=${busy} onClick=${() =>
              act(
                "abort",
                `Abort ${rolloutTitle(r)}? Devices whose turn has not come and jobs not taken yet are cancelled; pushes under way finish.`,
              )}>Abort</button>`
          : null
      }
    </div>
    <${ErrorText} error=${actionError} />
    ${
      r.state === "paused"
        ? html`<div class="rollout-reason reason-paused" role="status">
            ${PAUSE_KIND[r.pauseKind] ? html`<strong>Paused: ${PAUSE_KIND[r.pauseKind]}.</strong> ` : null}<span class="reason-text">${r.reason}</span>
            <div class="hint reason-hint">${RESUME_HINT[r.pauseKind] ?? ""}</div>
          </div>`
        : r.reason
          ? html`<div class=${`rollout-reason reason-${r.state}`} role="status"><span class="reason-text">${r.reason}</span></div>`
          : null
    }
    <dl class="facts">
      <dt>Rollout</dt><dd><code>${r.id}</code></dd>
      <dt>Firmware</dt><dd>${r.firmware.name} ${r.firmware.version} <code title=${r.firmware.id}>${r.firmware.id.slice(0, 8)}</code> (${bytes(r.firmware.size)})</dd>
      <dt>Devices</dt><dd>${selectorText(r.selector)}: ${r.counts.total}</dd>
      <dt>Progress</dt><dd class="overall"><${StateBar} counts=${r.counts} /></dd>
      <dt>Per device</dt><dd>${r.policy.maxAttempts} ${r.policy.maxAttempts === 1 ? "try" : "tries"}, timeout ${duration(r.policy.timeout * 1000)} (sleepy devices: plus their sleep), ${r.policy.concurrency} at once${r.policy.allowDowngrade ? ", downgrades allowed" : ""}${r.policy.replaceApp ? ", apps of another name replaced" : ""}</dd>
      <dt>On errors</dt><dd>${r.policy.onError}</dd>
      <dt>Start</dt><dd>${time(r.startAt)}${r.startedAt ? ` (started ${time(r.startedAt)})` : ""}</dd>
      <dt>Finished</dt><dd>${time(r.finishedAt)}</dd>
    </dl>
    <h3>Groups</h3>
    <div class="groups">
      ${r.groups.map((g) => html`<${Group} group=${g} count=${r.groups.length} onError=${r.policy.onError} />`)}
    </div>
    <h3>Devices</h3>
    <div class="table-box"><table class="rollout-devices">
      <thead><tr><th>Device</th><th>Group</th><th>Status</th><th>Job</th><th>Reason</th></tr></thead>
      <tbody>
        ${shown.map(
          (d) => html`<tr data-device=${d.device}>
            <td><a href=${`#/device/${encodeURIComponent(d.device)}`}>${d.device}</a>${d.sleepy ? html` <span class="badge badge-sleepy">sleepy</span>` : null}</td>
            <td>${d.group + 1}</td>
            <td><span class=${`dev-status dev-${d.status}`}>${d.status}</span></td>
            <td>${d.job ?? "–"}${d.jobState && d.jobState !== d.status ? html` <span class="fw">${d.jobState}</span>` : null}</td>
            <td class="reason">${d.reason ?? ""}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>
    ${r.devices.length > shown.length ? html`<p class="hint">And ${r.devices.length - shown.length} more (<code>mpota rollout show ${r.id} --json</code> lists every device).</p>` : null}
    <h3>Events</h3>
    <ol class="timeline rollout-events">
      ${r.events.map((e) => html`<li class=${`step step-${e.kind}`}><time>${new Date(e.at).toLocaleTimeString()}</time> <span class="kind">${e.kind}</span> ${e.message}</li>`)}
    </ol>
  </section>`;
}
