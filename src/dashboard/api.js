// The dashboard's only way to the server: JSON over /api/v1/ and one event stream.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ?? `The server answered ${status}.`);
    this.status = status;
    this.body = body ?? {};
  }
}

/** One API request. State-changing requests carry the header a cross-site form cannot send. */
export async function api(method, path, options = {}) {
  const headers = { "x-mpota-request": "1", ...(options.headers ?? {}) };
  let body = options.body;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(`/api/v1${path}`, { method, headers, body, credentials: "same-origin" });
  const text = await response.text();
  let value;
  try {
    value = text ? JSON.parse(text) : {};
  } catch {
    value = { error: text };
  }
  if (!response.ok) throw new ApiError(response.status, value);
  return value;
}

/** The `rel="next"` address of a Link header (the API's lists are paged), or null. */
export function nextLink(header) {
  const match = header ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(header) : null;
  return match ? match[1] : null;
}

/**
 * Every item of a paged list: the first page, then each `next` link until
 * there is none. `pageSize` asks for pages of that many (the server's
 * default when absent).
 */
export async function apiList(path, pageSize) {
  const sep = path.includes("?") ? "&" : "?";
  let url = `/api/v1${path}${pageSize ? `${sep}limit=${pageSize}` : ""}`;
  const items = [];
  // A bound on pages, so a server that links in a circle cannot keep the page loading for ever.
  for (let pages = 0; url && pages < 10_000; pages++) {
    const response = await fetch(url, { headers: { "x-mpota-request": "1" }, credentials: "same-origin" });
    const text = await response.text();
    let value;
    try {
      value = text ? JSON.parse(text) : [];
    } catch {
      value = { error: text };
    }
    if (!response.ok) throw new ApiError(response.status, value);
    items.push(...value);
    const next = nextLink(response.headers.get("link"));
    url = next?.startsWith("/api/v1/") ? next : null;
  }
  return items;
}

/**
 * Why the event stream closed, when the server refused it (e.g. 503: too many
 * streams open), as an ApiError with the server's words; null when it would open now.
 */
export async function streamRefusal() {
  const controller = new AbortController();
  try {
    const response = await fetch("/api/v1/events", { credentials: "same-origin", signal: controller.signal });
    if (response.ok) return null;
    let value;
    try {
      value = await response.json();
    } catch {
      value = {};
    }
    return new ApiError(response.status, value);
  } catch {
    return null;
  } finally {
    controller.abort();
  }
}

/**
 * One EventSource per page for everything live; named events are handed to
 * the listeners. The browser reconnects by itself and sends Last-Event-ID,
 * so the server replays what was missed (or sends `reset`).
 */
export class LiveEvents {
  constructor(onEvent, onState) {
    this.source = new EventSource("/api/v1/events");
    for (const name of ["device", "job", "firmware", "rollout", "reset"]) {
      this.source.addEventListener(name, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        onEvent(name, data);
      });
    }
    this.source.onopen = () => onState("live");
    this.source.onerror = () =>
      onState(this.source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  }

  close() {
    this.source.close();
  }
}
