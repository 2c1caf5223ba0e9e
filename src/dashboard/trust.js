// Device trust on the dashboard: which devices take commands without a signature they can check
// (an agent of contract v1, or unsigned commands allowed), which have no credential, and the
// allow-unsigned switch. Credentials come from GET /api/v1/credentials; the Add device form is
// pages/add-device.js.
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { time } from "./format.js";
import { html } from "./ui.js";

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
      // The switch shows the stored value: the stored credentials first, then the word that it changed.
      await onChanged();
      setDone(
        view.allowUnsigned
          ? `Unsigned commands are now allowed for ${view.device}.`
          : `Commands to ${view.device} must be signed again.`,
      );
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="device-trust">
    <h3>Commands and credential</h3>
    <dl class="facts">
      <dt>Agent</dt><dd class="agent-version">${device.v >= 2 ? `contract v${device.v}: verifies signed commands` : device.v === 1 ? "contract v1: cannot verify signed commands" : "not reported yet"}</dd>
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
