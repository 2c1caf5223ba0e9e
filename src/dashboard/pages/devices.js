// The Devices page: every device with its status, firmware and update, filtered and sorted in the
// page; a newer firmware of a device's line is offered as an Update button.
import { useMemo, useState } from "preact/hooks";
import { ago, shortId, time } from "../format.js";
import { TrustBadges, TrustBanner, trustProblems } from "../trust.js";
import { chipOf, html, isAppJob, JobProgress, newestByLine, statusText, TERMINAL } from "../ui.js";

const COLUMNS = [
  ["id", "Device"],
  ["status", "Status"],
  ["firmware", "Firmware"],
  ["app", "App"],
  ["chip", "Chip"],
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
  if (key === "app") return device.app?.name ? `${device.app.name} ${device.app.version}` : "";
  if (key === "chip") return device.chip ?? "";
  return device[key] ?? "";
}

/** An empty fleet says how to get a first device: simulated ones to try, or a real one provisioned. */
function EmptyFleet({ base }) {
  // The simulator's devices use the base topic "mpota" unless told otherwise.
  const baseOption = base && base !== "mpota" ? ` --base ${base}` : "";
  return html`<div class="empty empty-fleet">
    <p>No device has reported yet. Devices appear when their agent publishes its state.</p>
    <p>To try it without hardware, run this in a second terminal, in the folder the server runs in:</p>
    <pre class="command">npx mpota simulate --devices 3${baseOption}</pre>
    <p>It provisions three simulated devices (sim-1 to sim-3: the emulator running the real agent under MicroPython) and connects them to this server's broker; they show up here within seconds.</p>
    <p>For a real device, <code>${"npx mpota devices add <id>"}</code> (or <a href="#/add-device">Add device</a>) makes its login and writes the <code>mpota_config.py</code> to copy to the board with the agent.</p>
  </div>`;
}

export function DevicesPage({ devices, firmware, jobs, now, onUpdate, onCancel, credentials, base }) {
  const [filter, setFilter] = useState("");
  const [status, setStatus] = useState("all");
  const [sort, setSort] = useState({ key: "id", up: true });
  // A device is offered the newest release of its line built for its own chip.
  const newest = useMemo(() => newestByLine(firmware), [firmware]);
  const rows = useMemo(() => {
    const text = filter.trim().toLowerCase();
    const list = [...devices.values()].filter((d) => {
      if (status !== "all" && d.status !== status) return false;
      if (!text) return true;
      return [d.id, d.ip, d.fw, d.firmware?.name, d.firmware?.version, d.app?.name].some(
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
      <input type="search" placeholder="Filter by id, IP, firmware, app" aria-label="Filter devices" value=${filter} onInput=${(e) => setFilter(e.target.value)} />
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
    ${
      devices.size === 0
        ? html`<${EmptyFleet} base=${base} />`
        : html`<div class="table-box"><table class="devices">
      <thead><tr>${COLUMNS.map(([key, label]) => head(key, label))}</tr></thead>
      <tbody>
        ${rows.map((d) => {
          const chip = chipOf(d, firmware);
          const line = d.firmware && chip ? newest.get(`${d.firmware.name} ${chip}`) : undefined;
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
            <td class="app">${d.app?.name ? html`${d.app.name} ${d.app.version}` : d.app ? html`<span class="muted">no app yet</span>` : "–"}${d.app?.rolledBack ? html` <span class="badge badge-rollback" title=${d.app.rolledBack.why}>rolled back</span>` : null}</td>
            <td class="chip">${chip ?? "–"}</td>
            <td title=${time(d.lastSeen)}>${ago(d.lastSeen, now)}</td>
            <td>${d.ip ?? "–"}</td>
            <td>${d.rssi !== null && d.rssi !== undefined ? `${d.rssi} dBm` : "–"}</td>
            <td>${d.vbat !== null && d.vbat !== undefined ? `${d.vbat.toFixed(2)} V` : "–"}</td>
            <td class="update-cell">
              ${
                job && !TERMINAL.has(job.state)
                  ? html`<${JobProgress} job=${job} device=${d} onCancel=${onCancel} app=${isAppJob(job, firmware)} />`
                  : newer
                    ? html`<button class="small" onClick=${() => onUpdate(d.id, newer.id)}>Update to ${newer.version}</button>`
                    : null
              }
            </td>
          </tr>`;
        })}
      </tbody>
    </table></div>`
    }
  </section>`;
}
