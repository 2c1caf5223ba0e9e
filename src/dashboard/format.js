// Numbers as people read them.

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** "45 s", "4 min", "2 h 5 min". */
export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return `${h} h${m % 60 ? ` ${m % 60} min` : ""}`;
}

export function ago(at, now) {
  if (!at) return "never";
  const ms = now - at;
  return ms < 5000 ? "just now" : `${duration(ms)} ago`;
}

export function time(at) {
  return at ? new Date(at).toLocaleString() : "–";
}

export function rate(bytesPerSecond) {
  return bytesPerSecond > 0 ? `${(bytesPerSecond / 1024).toFixed(1)} KiB/s` : "–";
}

export function shortId(fw) {
  return fw ? fw.slice(0, 8) : "–";
}
