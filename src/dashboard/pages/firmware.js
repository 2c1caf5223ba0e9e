// The Firmware page: the upload form (checked by the server before it stores anything) and the
// store, with "Update all on <line>" for the newest firmware of each line.
import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "../api.js";
import { bytes, shortId, time } from "../format.js";
import { chipOf, downgradeQuestion, ErrorText, html, newestByLine } from "../ui.js";

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

export function FirmwarePage({ firmware, devices, onChanged, onLine, selected }) {
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
  const newest = newestByLine(firmware);
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
  // A line's update goes to its devices of the release's chip only (the server leaves the others out).
  const behind = (f) =>
    [...devices.values()].filter(
      (d) => d.firmware?.name === f.name && d.fw !== f.id && chipOf(d, firmware) === f.target,
    ).length;
  return html`<section>
    <h2>Add firmware</h2>
    <${Upload} onAdded=${onChanged} />
    <h2>Store</h2>
    <${ErrorText} error=${error} />
    ${lineResult ? html`<div class="result ok" role="status">Updating ${lineResult.firmware.name} to ${lineResult.firmware.version} as rollout ${lineResult.rollout.id}: ${lineResult.rollout.counts.total} devices, ${lineResult.rollout.counts.done} already on it, at most ${lineResult.concurrency} at a time.</div>` : null}
    <label class="concurrency">At most <input type="number" min="1" max="20" value=${concurrency} onInput=${(e) => setConcurrency(Number(e.target.value))} /> devices at a time</label>
    <label class="check"><input type="checkbox" name="allowDowngrade" checked=${allowDowngrade} onChange=${(e) => setAllowDowngrade(e.target.checked)} /> Allow downgrade (also on devices that run something newer)</label>
    <div class="table-box"><table class="firmware">
      <thead><tr><th>Name</th><th>Version</th><th>Identity</th><th>Size</th><th>Chip</th><th>Build</th><th>Devices</th><th>Notes</th><th>Added</th><th></th></tr></thead>
      <tbody>
        ${firmware.map(
          (f) => html`<tr data-firmware=${f.id} class=${f.id === selected ? "selected" : ""}>
            <td>${f.name}</td><td>${f.version}</td><td><code title=${f.id}>${shortId(f.id)}</code></td><td>${bytes(f.size)}</td>
            <td class="chip" title=${`Release kind ${f.kind}: it goes only to ${f.target} devices`}>${f.target}</td>
            <td>${f.build ?? "–"} ${f.micropython ?? ""}</td><td>${f.devices}</td><td class="notes">${f.notes ?? ""}</td><td>${time(f.addedAt)}</td>
            <td>
              ${newest.get(`${f.name} ${f.target}`) === f && behind(f) > 0 ? html`<button class="small" onClick=${() => line(f)}>Update all on ${f.name} (${behind(f)})</button>` : null}
              <button class="small danger" onClick=${() => remove(f)}>Remove</button>
            </td>
          </tr>`,
        )}
      </tbody>
    </table></div>
  </section>`;
}
