// #/add-device[/<id>]: provisions a device (POST /api/v1/devices) and shows its mpota_config.py once.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { html } from "../ui.js";

/** `[A-Za-z0-9_-]{1,64}`, as the MQTT contract says (the server checks the rest). */
const DEVICE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Offers `text` as a file download, made in the page (nothing is sent to the server again). */
function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/x-python" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** #/add-device[/<id>]: provisions a device and shows its mpota_config.py once. */
export function AddDevicePage({ initialId, onChanged }) {
  const [id, setId] = useState(initialId ?? "");
  const [host, setHost] = useState("");
  const [port, setPort] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [issued, setIssued] = useState(null);
  const problem =
    id !== "" && !DEVICE_ID.test(id)
      ? "A device id is 1 to 64 of A-Z, a-z, 0-9, _ and - (it is the MQTT user name and client id)."
      : null;
  const submit = async (event) => {
    event.preventDefault();
    if (problem) return;
    setBusy(true);
    setError(null);
    try {
      const request = { id };
      if (host.trim() !== "") request.host = host.trim();
      if (port.trim() !== "") request.port = /^\d+$/.test(port.trim()) ? Number(port.trim()) : port.trim();
      setIssued(await api("POST", "/devices", { json: request }));
      await onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const again = () => {
    setIssued(null);
    setId("");
  };
  if (issued) {
    return html`<section class="add-device">
      <h2>Add device</h2>
      <div class="result ok issued" role="status">
        <p><strong>Provisioned ${issued.device}.</strong> It logs in to the broker at ${issued.broker.host}:${issued.broker.port} as <code>${issued.username}</code>${issued.commandKeys.length > 0 ? html`, and checks commands with the key${issued.commandKeys.length > 1 ? "s" : ""} ${issued.commandKeys.join(", ")}` : null}.</p>
        <p class="secret-note"><strong>This mpota_config.py holds the device's secret (MQTT_PASSWORD) and is shown only once:</strong> the server keeps only a salted hash of it. Download it now, keep it private, and copy it to the board as <code>mpota_config.py</code> (<code>mpremote cp mpota_config.py :mpota_config.py</code>). Lost it? <code>mpota devices rotate ${issued.device}</code> gives the device a new one.</p>
        ${issued.commandKeys.length === 0 ? html`<p class="trust-todo">It has no command keys (CMD_KEYS is empty): this server has no command key yet, so the agent cannot verify commands.</p>` : null}
        <button onClick=${() => download("mpota_config.py", issued.config)}>Download mpota_config.py</button>
        <pre class="config" aria-label="mpota_config.py">${issued.config}</pre>
      </div>
      <button class="small" onClick=${again}>Add another device</button>
    </section>`;
  }
  return html`<section class="add-device">
    <h2>Add device</h2>
    <form class="upload" onSubmit=${submit}>
      <p class="hint">Gives a device its own credential for the broker and writes a ready <code>mpota_config.py</code> for it (what <code>mpota devices add</code> does). The broker refuses devices without one.</p>
      <div class="fields">
        <label>Device id <input name="id" required placeholder="kitchen" autocomplete="off" value=${id} onInput=${(e) => setId(e.target.value.trim())} /></label>
        <label>Broker host (optional) <input name="host" placeholder="this server's address" value=${host} onInput=${(e) => setHost(e.target.value)} /></label>
        <label>Broker port (optional) <input name="port" inputmode="numeric" placeholder="its MQTT port" value=${port} onInput=${(e) => setPort(e.target.value)} /></label>
      </div>
      <p class="hint">Host and port are where the device reaches the broker; empty, the server's own address on the network and its broker's port.</p>
      ${problem ? html`<p class="field-hint">${problem}</p>` : null}
      <button type="submit" disabled=${busy || id === "" || problem !== null}>${busy ? "Provisioning…" : "Provision"}</button>
      ${error ? html`<div class="error" role="alert">${error.message}</div>` : null}
    </form>
  </section>`;
}
