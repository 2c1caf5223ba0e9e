// The Apps page: app releases (a board's Python files, signed) with the devices running each, and
// the upload of a zipped app folder, which the server checks, signs with its app key and stores.
import { useEffect, useState } from "preact/hooks";
import { ApiError, api, apiList } from "../api.js";
import { bytes, shortId, time } from "../format.js";
import { ErrorText, html } from "../ui.js";

/** The board kinds a release may be for, as `sys.platform` names them (src/apps/mpy-header.ts). */
const BOARDS = ["esp32", "esp8266", "rp2"];

function Verdicts({ verdicts }) {
  if (!verdicts?.length) return null;
  return html`<ul class="verdicts">
    ${verdicts.map((v) => html`<li class=${`verdict verdict-${v.level}`}><strong>${v.level}</strong> ${v.check}: ${v.message}</li>`)}
  </ul>`;
}

function Added({ added }) {
  const a = added.app;
  return html`<div class="result ok" role="status">
    Added ${a.name} ${a.version}: ${a.files} ${a.files === 1 ? "file" : "files"}, ${bytes(a.bytes)}, for ${a.boards.join(", ")}; signed with app key ${added.key.kid}.
    ${added.key.created ? html`<p class="key-note">The server made this app key now. Boards take only releases signed by a key in their APP_KEYS: <code>mpota app key</code> prints its modulus.</p>` : null}
    ${added.skipped?.length ? html`<p class="skipped">Left out: ${added.skipped.join(", ")}</p>` : null}
    <${Verdicts} verdicts=${added.verdicts} />
  </div>`;
}

function Upload({ onAdded }) {
  const [file, setFile] = useState(null);
  const [name, setName] = useState("");
  const [version, setVersion] = useState("");
  const [boards, setBoards] = useState(new Set(BOARDS));
  const [notes, setNotes] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    if (!file || boards.size === 0) return;
    setBusy(true);
    setResult(null);
    const query = new URLSearchParams({ name, version, boards: [...boards].join(",") });
    if (notes) query.set("notes", notes);
    try {
      const added = await api("POST", `/apps/zip?${query}`, {
        body: file,
        headers: { "content-type": "application/zip" },
      });
      setResult({ ok: true, added });
      onAdded();
    } catch (e) {
      setResult({ ok: false, error: e, verdicts: e instanceof ApiError ? e.body.verdicts : undefined });
    } finally {
      setBusy(false);
    }
  };
  const toggle = (board) =>
    setBoards((set) => {
      const next = new Set(set);
      if (next.has(board)) next.delete(board);
      else next.add(board);
      return next;
    });
  return html`<form class="upload app-upload" onSubmit=${submit}>
    <div class="dropzone" onDragOver=${(e) => e.preventDefault()} onDrop=${(e) => {
      e.preventDefault();
      const f = e.dataTransfer?.files?.[0];
      if (f) setFile(f);
    }}>
      <p>${file ? html`<strong class="chosen">${file.name}</strong> (${bytes(file.size)})` : "Drop the app's folder as a .zip here, or"}</p>
      <label class="file">Choose a zip<input type="file" name="zip" accept=".zip,application/zip" onChange=${(e) => setFile(e.target.files[0] ?? null)} /></label>
    </div>
    <div class="fields">
      <label>App name <input name="name" required placeholder="thermostat" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
      <label>App version <input name="version" required placeholder="1.4.0" value=${version} onInput=${(e) => setVersion(e.target.value)} /></label>
      <fieldset class="boards"><legend>Boards</legend>
        ${BOARDS.map((b) => html`<label class="check"><input type="checkbox" name=${`board-${b}`} checked=${boards.has(b)} onChange=${() => toggle(b)} /> ${b}</label>`)}
      </fieldset>
      <label class="notes">Release notes <textarea name="notes" rows="2" value=${notes} onInput=${(e) => setNotes(e.target.value)}></textarea></label>
    </div>
    <button type="submit" disabled=${!file || busy || boards.size === 0}>${busy ? "Checking…" : "Check, sign and add"}</button>
    ${result?.ok ? html`<${Added} added=${result.added} />` : null}
    ${
      result && !result.ok
        ? html`<div class="result refused" role="alert"><strong>Refused; nothing was stored.</strong><pre>${result.error.message}</pre><${Verdicts} verdicts=${result.verdicts} /></div>`
        : null
    }
  </form>`;
}

/** `version` changes when the store changes (the shell's firmware list includes app releases). */
export function AppsPage({ version, selected }) {
  const [apps, setApps] = useState(null);
  const [error, setError] = useState(null);
  const load = () => apiList("/apps").then(setApps, setError);
  useEffect(() => {
    void load();
  }, [version]);
  // #/apps/<identity> (Home Assistant's release link) marks that release's row.
  useEffect(() => {
    if (selected && apps)
      document.querySelector(`tr[data-app="${CSS.escape(selected)}"]`)?.scrollIntoView({ block: "center" });
  }, [selected, apps]);
  return html`<section>
    <h2>Add an app release</h2>
    <p class="hint">Zip the app's folder (its <code>.py</code>, <code>.mpy</code> and data files). The server checks it as <code>mpota app add</code> does, signs it with its app key, and stores only files it does not hold yet.</p>
    <${Upload} onAdded=${load} />
    <h2>App releases</h2>
    <${ErrorText} error=${error} />
    ${
      apps && apps.length === 0
        ? html`<p class="empty">No app releases yet. Upload a zip above, or run <code>mpota app add DIR --name NAME --version VERSION</code> beside the server.</p>`
        : null
    }
    ${
      apps?.length
        ? html`<div class="table-box"><table class="apps">
      <thead><tr><th>Name</th><th>Version</th><th>Release</th><th>Files</th><th>Size</th><th>Boards</th><th>Devices</th><th>Notes</th><th>Added</th></tr></thead>
      <tbody>
        ${apps.map(
          (a) => html`<tr data-app=${a.id} class=${a.id === selected ? "selected" : ""}>
            <td class="app-name">${a.name}</td><td class="app-version">${a.version}</td>
            <td><code title=${a.sha256}>${shortId(a.id)}</code></td>
            <td class="app-files">${a.files}</td><td class="app-bytes" title=${`${a.bytes} bytes`}>${bytes(a.bytes)}</td>
            <td class="app-boards">${a.boards.join(", ")}</td><td class="app-devices">${a.devices}</td>
            <td class="notes">${a.notes ?? ""}</td><td>${time(a.addedAt)}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>`
        : null
    }
  </section>`;
}
