// Device trust on the dashboard: which devices take commands without a signature they can check
// (an agent of contract v1, or unsigned commands allowed), which have no credential, the
// allow-unsigned switch, and the Add device form that provisions a credential and shows its
// mpota_config.py once. Credentials come from GET /api/v1/credentials.
import htm from "htm";
import { h } from "preact";
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { time } from "./format.js";

const html = htm.bind(h);

/** `[A-Za-z0-9_-]{1,64}`, as the MQTT contract says (the server checks the rest). */
const DEVICE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * What the dashboard warns about for one device, most serious first. `credentials` is the map of
 * provisioned devices (an id mapped to null is being read again: nothing is said about it yet),
 * or null when the server does not say (then nothing is said about credentials).
 */
export function trustProblems(device, credentials, base = "mpota") {
  const problems = [];
  const credential = credentials?.get(device.id);
  const topic = `${base}/${device.id}/cmd`;
  const allowed = credential?.allowUnsigned === true;
  if (credentials && !credentials.has(device.id)) {
    problems.push({
      kind: "unprovisioned",
      badge: "not provisioned",
      title: `${device.id} has no credential`,
      means:
        "This server's broker refuses it when it connects, until it has one: it reported before credentials were needed, or its credential was revoked.",
      todo: `Provision it (Add device, or \`mpota devices add ${device.id}\`) and copy the mpota_config.py it gives to the board.`,
    });
  }
  if (device.v === 1) {
    problems.push({
      kind: "v1",
      badge: allowed ? "v1 agent, unsigned allowed" : "v1 agent: no signed commands",
      title: `${device.id} runs a v1 agent, which cannot verify signed commands`,
      means: `It acts on any command on ${topic} without checking who sent it: anyone who can publish on its command topic can send it into OTA mode.`,
      todo: allowed
        ? `Unsigned commands are allowed for it, so mpota updates it anyway. Update its agent (device/ of this mpota, with the command keys of a config from \`mpota devices rotate ${device.id}\`), then turn "Allow unsigned commands" off.`
        : `mpota refuses to update it until its agent is updated: copy device/ of this mpota to the board, with the command keys (CMD_KEYS) of a config from \`mpota devices rotate ${device.id}\`. "Allow unsigned commands" on the device page lets mpota update it as it is, with that risk.`,
    });
  } else if (allowed) {
    problems.push({
      kind: "unsigned",
      badge: "unsigned commands allowed",
      title: `Commands to ${device.id} may go unsigned`,
      means: `mpota would send it commands without a signature, and if its mpota_config.py says ALLOW_UNSIGNED = True its agent acts on them: anyone who can publish on its command topic (${topic}) can send it into OTA mode.`,
      todo: `Its agent ${device.v === 2 ? "verifies signed commands (contract v2)" : "has not reported yet"}: turn "Allow unsigned commands" off and keep ALLOW_UNSIGNED = False on the board.`,
    });
  }
  return problems;
}

/** Small badges for the device list (the explanation is in their title and on the device page). */
export function TrustBadges({ problems }) {
  return problems.map(
    (p) =>
      html` <span class=${`badge badge-trust badge-${p.kind}`} title=${`${p.title}. ${p.means} ${p.todo}`}>${p.badge}</span>`,
  );
}

/** Above the device list: how many devices are at risk and what it means. */
export function TrustBanner({ devices, credentials, base }) {
  const risky = [];
  const unprovisioned = [];
  for (const d of devices.values()) {
    const kinds = trustProblems(d, credentials, base).map((p) => p.kind);
    if (kinds.includes("v1") || kinds.includes("unsigned")) risky.push(d.id);
    if (kinds.includes("unprovisioned")) unprovisioned.push(d.id);
  }
  if (risky.length === 0 && unprovisioned.length === 0) return null;
  const list = (ids) => `${ids.slice(0, 8).join(", ")}${ids.length > 8 ? ` and ${ids.length - 8} more` : ""}`;
  return html`<div class="trust-banner" role="alert">
    ${
      risky.length > 0
        ? html`<p><strong>${risky.length === 1 ? "1 device takes" : `${risky.length} devices take`} commands without a signature it can check</strong> (${list(risky)}): anyone who can publish on ${risky.length === 1 ? "its" : "their"} command topic can send ${risky.length === 1 ? "it" : "them"} into OTA mode. Update ${risky.length === 1 ? "its agent" : "their agents"}; the device page says how.</p>`
        : null
    }
    ${
      unprovisioned.length > 0
        ? html`<p><strong>${unprovisioned.length === 1 ? "1 device is" : `${unprovisioned.length} devices are`} not provisioned</strong> (${list(unprovisioned)}): the broker refuses ${unprovisioned.length === 1 ? "it" : "them"} until ${unprovisioned.length === 1 ? "it has" : "they have"} a credential (Add device).</p>`
        : null
    }
  </div>`;
}

/** The device page's warnings: what each means and what to do. */
export function TrustWarnings({ device, credentials, base }) {
  return trustProblems(device, credentials, base).map(
    (p) => html`<div class=${`trust-warning trust-${p.kind}`} role="alert">
      <strong>${p.title}.</strong> ${p.means}
      <div class="trust-todo">${p.todo}</div>
      ${p.kind === "unprovisioned" ? html`<a class="button-link" href=${`#/add-device/${encodeURIComponent(device.id)}`}>Provision ${device.id}</a>` : null}
    </div>`,
  );
}

/** The device page's part on commands: agent version, credential and the allow-unsigned switch. */
export function DeviceTrust({ device, credentials, base, onChanged }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const credential = credentials?.get(device.id);
  const topic = `${base}/${device.id}/cmd`;
  const toggle = async (event) => {
    const allow = event.currentTarget.checked;
    // The box shows the stored value until the server has changed it.
    event.currentTarget.checked = !allow;
    const question = allow
      ? `Allow unsigned commands for ${device.id}? mpota will then send it commands it cannot check: anyone who can publish on its command topic (${topic}) can send it into OTA mode. Do this only for a device whose agent you cannot update yet.`
      : `Require signed commands for ${device.id} again? ${device.v === 1 ? "Its agent (contract v1) cannot verify them, so mpota will refuse to update it until its agent is updated." : "Its agent can verify them."}`;
    if (!confirm(question)) return;
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const view = await api("POST", `/devices/${encodeURIComponent(device.id)}/allow-unsigned`, {
        json: { allow },
      });
      setDone(
        view.allowUnsigned
          ? `Unsigned commands are now allowed for ${view.device}.`
          : `Commands to ${view.device} must be signed again.`,
      );
      await onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="device-trust">
    <h3>Commands and credential</h3>
    <dl class="facts">
      <dt>Agent</dt><dd class="agent-version">${device.v === 2 ? "contract v2: verifies signed commands" : device.v === 1 ? "contract v1: cannot verify signed commands" : "not reported yet"}</dd>
      <dt>Credential</dt><dd class="credential">${
        credentials === null
          ? "– (this server does not say)"
          : credentials.get(device.id) === null
            ? "checking…"
            : credential
              ? `provisioned ${time(credential.createdAt)}${credential.rotatedAt ? `, new credential ${time(credential.rotatedAt)}` : ""}`
              : "none: not provisioned"
      }</dd>
      ${credential ? html`<dt>Last command number</dt><dd>${credential.commandSeq}</dd>` : null}
    </dl>
    ${
      credential
        ? html`<label class="check switch"><input type="checkbox" role="switch" name="allowUnsigned" checked=${credential.allowUnsigned} disabled=${busy} onChange=${toggle} /> Allow unsigned commands (for an agent that cannot verify signed ones)</label>`
        : null
    }
    ${done ? html`<div class="result ok" role="status">${done}</div>` : null}
    ${error ? html`<div class="error" role="alert">${error.message}</div>` : null}
  </div>`;
}

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
