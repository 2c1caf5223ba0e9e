// Which devices the New rollout form offers for the chosen release: those whose chip the release's
// kind serves (the release view's `chips`). The others are listed with the reason; the server
// refuses them on its own, so this is a convenience, not the rule's keeper.
import { html, notEligibleReason } from "../ui.js";

/** Devices listed as not eligible; the count says the rest. */
const NOT_ELIGIBLE_SHOWN = 20;

/** The known devices split by whether `release` can go to them, ids sorted. */
export function eligibility(devices, release, firmware) {
  const eligible = [];
  const notEligible = [];
  for (const id of [...devices.keys()].sort()) {
    const device = devices.get(id);
    const why = device ? notEligibleReason(device, release, firmware) : null;
    if (why) notEligible.push({ id, why });
    else eligible.push(id);
  }
  return { eligible, notEligible };
}

/** A warning for typed ids the release cannot go to, and the list of every such device with the reason. */
export function NotEligible({ release, notEligible, named, by }) {
  if (!release || notEligible.length === 0) return null;
  const typed = notEligible.filter((n) => named.has(n.id));
  return html`
    ${
      typed.length > 0
        ? html`<p class="field-warning" role="alert">${typed.map((n) => n.id).join(", ")} cannot take ${release.name} ${release.version}: the server will refuse this rollout. Leave ${typed.length === 1 ? "it" : "them"} out.</p>`
        : null
    }
    <details class="not-eligible" open>
      <summary>${notEligible.length} device${notEligible.length === 1 ? "" : "s"} not eligible for ${release.name} ${release.version}${by === "devices" ? "" : " (a tag or line leaves them out)"}</summary>
      <ul>${notEligible.slice(0, NOT_ELIGIBLE_SHOWN).map((n) => html`<li data-device=${n.id}><strong>${n.id}</strong>: ${n.why}</li>`)}</ul>
      ${notEligible.length > NOT_ELIGIBLE_SHOWN ? html`<p class="hint">And ${notEligible.length - NOT_ELIGIBLE_SHOWN} more.</p>` : null}
    </details>`;
}
