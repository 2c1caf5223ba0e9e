// How the rollout commands print a rollout: the list table, one rollout's
// groups, devices and events, and the one-line counts.
import { formatTable } from "../firmware/format.ts";
import type { RolloutCounts, RolloutDetail, RolloutView } from "../server/api/rollout-api.ts";
import { relativeTime } from "./devices.ts";
import { type DeliveryFacts, deviceFetches, phaseWord, RELEASE_CELL, releaseWords } from "./job-words.ts";
import { DEFAULT_TABLE_WIDTH, fitTable } from "./table-fit.ts";

function selectorText(r: RolloutView): string {
  const s = r.selector;
  if (s.kind === "tag") return `tag ${s.tag}`;
  if (s.kind === "line") return `line ${s.line}`;
  return s.devices.length <= 3 ? s.devices.join(", ") : `${s.devices.length} devices`;
}

/** "3 done, 1 pushing, 2 pending": the non-zero counts, in a rollout's order ("fetching" for a release devices fetch). */
export function countsText(c: RolloutCounts, how: DeliveryFacts = {}): string {
  const order: Array<Exclude<keyof RolloutCounts, "total">> = [
    "done",
    "verifying",
    "pushing",
    "scheduled",
    "pending",
    "failed",
    "overdue",
    "skipped",
    "cancelled",
  ];
  const parts = order.filter((k) => c[k] > 0).map((k) => `${c[k]} ${phaseWord(k, deviceFetches(how))}`);
  return parts.length > 0 ? parts.join(", ") : "no devices";
}

export function stateText(r: RolloutView, now: number): string {
  if (r.state === "scheduled") return `scheduled, starts ${relativeTime(r.startAt, now)}`;
  if (r.state === "running") return `running, group ${r.currentGroup + 1} of ${r.groups.length}`;
  return r.state;
}

export function rolloutsTable(list: RolloutView[], now = Date.now(), width = DEFAULT_TABLE_WIDTH): string {
  if (list.length === 0) {
    return "No rollouts. Start one with `mpota rollout create RELEASE --tag TAG` (or --devices, --line).\n";
  }
  const rows = [["ROLLOUT", "NAME", "RELEASE", "DEVICES", "STATE", "DONE", "FAILED", "CREATED"]];
  for (const r of list) {
    rows.push([
      r.id,
      r.name ?? "-",
      releaseWords(r.firmware, r, RELEASE_CELL),
      selectorText(r),
      stateText(r, now),
      `${r.counts.done}/${r.counts.total}`,
      String(r.counts.failed + r.counts.overdue),
      relativeTime(r.createdAt, now),
    ]);
  }
  const why = list.filter((r) => r.state === "paused" && r.reason);
  const notes = why.length > 0 ? `\n${why.map((r) => `${r.id}: ${r.reason}`).join("\n")}\n` : "";
  // The rollout's id stays whole (its name, a label, may be cut: `rollout show ID` finds it).
  const fitted = fitTable(rows, width, [
    [1, "end"],
    [2, "keep-last-word"],
    [3, "end"],
    [4, "end"],
  ]);
  return `${formatTable(fitted, { header: true })}${notes}`;
}

function groupsTable(r: RolloutView, indent: string): string {
  const fetches = deviceFetches(r);
  const rows = [
    [
      "GROUP",
      "SIZE",
      "SUCCESS",
      "ERRORS",
      "STATE",
      "PENDING",
      "SCHEDULED",
      phaseWord("pushing", fetches).toUpperCase(),
      "VERIFYING",
      "DONE",
      "FAILED",
    ],
  ];
  for (const g of r.groups) {
    rows.push([
      `${g.index + 1} (${g.spec})${g.approve ? " approve" : ""}`,
      String(g.size),
      `${g.successThreshold} %`,
      `>${g.errorThreshold} % of ${g.minExecuted}+`,
      g.state,
      String(g.counts.pending),
      String(g.counts.scheduled),
      String(g.counts.pushing),
      String(g.counts.verifying),
      String(g.counts.done),
      String(g.counts.failed + g.counts.overdue) +
        (g.counts.skipped + g.counts.cancelled > 0
          ? ` (+${g.counts.skipped} skipped, ${g.counts.cancelled} cancelled)`
          : ""),
    ]);
  }
  return formatTable(rows, { header: true, indent }).trimEnd();
}

export function rolloutText(r: RolloutDetail, now = Date.now()): string {
  const p = r.policy;
  const lines = [
    `Rollout ${r.id}${r.name ? ` "${r.name}"` : ""}: ${releaseWords(r.firmware, r)} (${r.firmware.id}) to ${selectorText(r)}`,
    `  state      ${stateText(r, now)}`,
  ];
  if (r.reason) lines.push(`  ${r.state === "completed" ? "result" : "reason"}     ${r.reason}`);
  lines.push(
    `  devices    ${r.counts.total}: ${countsText(r.counts, r)}`,
    `  policy     ${p.maxAttempts} tries per device, timeout ${p.timeout} s (sleepy devices: plus their sleep), ${p.concurrency} at once, ${p.onError} on errors${p.allowDowngrade ? ", downgrades allowed" : ""}${p.replaceApp ? ", apps of another name replaced" : ""}`,
    `  created    ${relativeTime(r.createdAt, now)}${r.startedAt !== null ? `, started ${relativeTime(r.startedAt, now)}` : ""}${r.finishedAt !== null ? `, ended ${relativeTime(r.finishedAt, now)}` : ""}`,
    "",
    groupsTable(r, "  "),
  );
  const notable = r.devices.filter((d) => d.status !== "pending" && d.status !== "done");
  const shown = notable.length > 0 ? notable : [];
  if (shown.length > 0) {
    lines.push("", "Devices not pending or done:");
    const rows = [["DEVICE", "GROUP", "STATUS", "JOB", "REASON"]];
    for (const d of shown.slice(0, 50)) {
      rows.push([
        d.device,
        String(d.group + 1),
        `${phaseWord(d.status, deviceFetches(r))}${d.sleepy && d.status === "scheduled" ? " (asleep)" : ""}`,
        d.job ?? "-",
        d.reason ?? "",
      ]);
    }
    lines.push(formatTable(rows, { header: true, indent: "  " }).trimEnd());
    if (shown.length > 50) lines.push(`  ... and ${shown.length - 50} more (--json lists every device)`);
  }
  if (r.events.length > 0) {
    lines.push("", "Events (newest first):");
    for (const e of r.events.slice(0, 20)) {
      lines.push(
        `  ${new Date(e.at).toISOString().slice(0, 19).replace("T", " ")}  ${e.kind.padEnd(14)} ${e.message}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
