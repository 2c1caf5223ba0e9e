// The Audit page: who changed what through the MQTT bridge or the HTTP API (GET /api/v1/audit),
// newest first, a page at a time. Loaded when the page opens (a reload or navigating here shows
// what is new); the same list as `mpota audit`.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { time } from "../format.js";
import { html } from "../ui.js";

/** Entries per page. */
export const AUDIT_PAGE = 50;

/** The details of an entry as "key value" pairs, without the refusal reason (shown as the outcome). */
function details(entry) {
  const pairs = Object.entries(entry.detail ?? {}).filter(
    ([key, value]) => key !== "reason" && !(typeof value === "string" && value === entry.target),
  );
  return pairs.map(([key, value]) => `${key} ${Array.isArray(value) ? value.join(", ") : String(value)}`);
}

function Outcome({ entry }) {
  if (entry.outcome === "ok") return html`<span class="outcome outcome-ok">done</span>`;
  const reason = entry.detail?.reason;
  return html`<span class="outcome outcome-refused">refused</span>${reason ? html`<div class="audit-reason">${reason}</div>` : null}`;
}

export function AuditPage() {
  // The ids each shown page starts before: [] is the newest page.
  const [cursors, setCursors] = useState([]);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [loads, setLoads] = useState(0);
  const before = cursors.at(-1);
  useEffect(() => {
    setError(null);
    // One more than shown: tells whether there is an older page.
    const query = new URLSearchParams({ limit: String(AUDIT_PAGE + 1) });
    if (before !== undefined) query.set("before", String(before));
    api("GET", `/audit?${query}`).then(
      (entries) => setPage({ entries: entries.slice(0, AUDIT_PAGE), older: entries.length > AUDIT_PAGE }),
      setError,
    );
  }, [before, loads]);
  const entries = page?.entries ?? [];
  const newest = () => {
    setCursors([]);
    setLoads((n) => n + 1);
  };
  const older = () => setCursors((c) => [...c, entries[entries.length - 1].id]);
  const newer = () => setCursors((c) => c.slice(0, -1));
  return html`<section class="audit">
    <h2>Audit</h2>
    <p class="hint">Every change made through the MQTT bridge or the HTTP API (updates, firmware, rollouts, device credentials, the admin token), with who asked and whether it was done or refused. The same list as <code>mpota audit</code>.</p>
    <div class="toolbar">
      <button class="small" onClick=${newest}>Newest</button>
      <button class="small" disabled=${cursors.length === 0} onClick=${newer}>Newer</button>
      <button class="small" disabled=${!page?.older} onClick=${older}>Older</button>
      <span class="count">${
        entries.length > 0
          ? `${entries.length} ${entries.length === 1 ? "entry" : "entries"}${cursors.length > 0 ? `, page ${cursors.length + 1}` : ""}`
          : ""
      }</span>
    </div>
    ${error ? html`<div class="error" role="alert">${error.message}</div>` : null}
    ${
      page && entries.length === 0 && !error
        ? html`<p class="empty">${cursors.length > 0 ? "Nothing older." : "Nothing recorded yet: every change made through the bridge or the HTTP API appears here."}</p>`
        : null
    }
    ${
      entries.length > 0
        ? html`<div class="table-box"><table class="audit-list">
            <thead><tr><th>When</th><th>Who</th><th>Action</th><th>Target</th><th>Outcome</th></tr></thead>
            <tbody>
              ${entries.map(
                (e) => html`<tr data-audit=${e.id} class=${`audit-${e.outcome}`}>
                  <td class="when">${time(e.at)}</td>
                  <td class="actor">${e.actor}</td>
                  <td class="action"><code>${e.action}</code>${details(e).map((d) => html`<div class="audit-detail">${d}</div>`)}</td>
                  <td class="target">${e.target ?? "–"}</td>
                  <td class="result-cell"><${Outcome} entry=${e} /></td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : null
    }
  </section>`;
}
