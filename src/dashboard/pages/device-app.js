// A device's app on its page: what it runs, the last rollback's reason, and an update to another
// release of the same app built for its board.
import { useEffect, useState } from "preact/hooks";
import { apiList } from "../api.js";
import { bytes, shortId } from "../format.js";
import { ErrorText, html } from "../ui.js";

/** "thermostat 1.4.0", or null when the device reports no app. */
export function appText(device) {
  const app = device.app;
  if (!app) return null;
  return app.name ? `${app.name} ${app.version}` : "no app yet";
}

/** The app section of the device page; `storeVersion` changes when the release store does. */
export function DeviceApp({ device, storeVersion, busy, onUpdate }) {
  const app = device.app;
  const [apps, setApps] = useState(null);
  const [error, setError] = useState(null);
  const [target, setTarget] = useState("");
  useEffect(() => {
    if (app) apiList("/apps").then(setApps, setError);
  }, [storeVersion, Boolean(app)]);
  if (!app) return null;
  // Releases of the app it runs (any app when it runs none yet) that suit its board, not the one installed.
  const choices = (apps ?? []).filter(
    (a) =>
      (!app.name || a.name === app.name) &&
      (!app.board || a.boards.includes(app.board)) &&
      a.sha256 !== app.id,
  );
  const chosen = target || choices[0]?.id || "";
  return html`<div class="device-app-section">
    <h3>App</h3>
    <dl class="facts">
      <dt>App</dt><dd class="app-installed">${appText(device)} ${app.id ? html`<code title=${app.id}>${shortId(app.id)}</code>` : null}</dd>
      <dt>Board</dt><dd>${app.board ?? "–"}</dd>
      <dt>Room for an app</dt><dd>${bytes(app.free)}</dd>
    </dl>
    ${
      app.rolledBack
        ? html`<div class="app-rollback" role="status">The last app update (job ${app.rolledBack.job}) was rolled back on the device: <span class="why">${app.rolledBack.why}</span></div>`
        : null
    }
    <${ErrorText} error=${error} />
    ${
      busy
        ? null
        : choices.length > 0
          ? html`<div class="toolbar">
              <select aria-label="App release to install" value=${chosen} onChange=${(e) => setTarget(e.target.value)}>
                ${choices.map((a) => html`<option value=${a.id}>${a.name} ${a.version} (${a.files} files, ${bytes(a.bytes)})</option>`)}
              </select>
              <button disabled=${!chosen} onClick=${() => onUpdate(device.id, chosen)}>Update app</button>
            </div>`
          : apps
            ? html`<p class="empty">No other release of ${app.name ?? "an app"} for ${app.board ?? "this board"} is stored.</p>`
            : null
    }
  </div>`;
}
