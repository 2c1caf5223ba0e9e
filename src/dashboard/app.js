// The dashboard's shell: the session check, the header, the hash routes to the pages, and the
// fleet state every page shares (devices, firmware, active jobs, credentials), kept live by the
// page's one event stream.
import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, apiList, LiveEvents, streamRefusal } from "./api.js";
import { AddDevicePage } from "./pages/add-device.js";
import { AppsPage } from "./pages/apps.js";
import { AuditPage } from "./pages/audit.js";
import { DevicePage } from "./pages/device.js";
import { DevicesPage } from "./pages/devices.js";
import { FirmwarePage } from "./pages/firmware.js";
import { JobsPage } from "./pages/jobs.js";
import { Login } from "./pages/login.js";
import { RolloutPage, RolloutsPage, rolloutFeed } from "./pages/rollouts.js";
import { ErrorText, html, useNow } from "./ui.js";

/** Jobs kept in the page's live map at most (memory stays flat during long sessions). */
const MAX_LIVE_JOBS = 200;
/**
 * Items per page when reading the fleet's lists: `?page=N` in the address (before the #) sets it (tests use a
 * small one); otherwise the server's default.
 */
const pageSize = Number(new URLSearchParams(location.search).get("page")) || undefined;
/** After a device without a known credential reports, credentials are read again this much later (once). */
const CREDENTIALS_RELOAD_MS = 500;

/**
 * Whether `incoming` is older than the job the page already holds. A request's answer (`reply`)
 * can arrive after the live event of the job's next state (under load, often does): it must not
 * put the job back. Both carry `updatedAt`; on a tie a reply loses (the event was sent after it).
 */
function isStale(held, incoming, reply) {
  if (!held || typeof held.updatedAt !== "number" || typeof incoming.updatedAt !== "number") return false;
  return reply ? held.updatedAt >= incoming.updatedAt : held.updatedAt > incoming.updatedAt;
}

function useHashRoute() {
  const [hash, setHash] = useState(location.hash || "#/devices");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/devices");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  const parts = hash.replace(/^#\//, "").split("/").map(decodeURIComponent);
  return parts;
}

/** `auth`: "none" when the server runs with --no-auth (no login, so no Log out). */
function Shell({ auth, onLogout }) {
  const route = useHashRoute();
  const now = useNow();
  const [devices, setDevices] = useState(new Map());
  const [firmware, setFirmware] = useState([]);
  const [jobs, setJobs] = useState(new Map());
  // Provisioned devices by id (an id mapped to null: being read again); null when this server does
  // not list credentials.
  const [credentials, setCredentials] = useState(null);
  const [base, setBase] = useState("mpota");
  const [live, setLive] = useState("connecting");
  const [error, setError] = useState(null);

  const loadDevices = useCallback(
    () => apiList("/devices", pageSize).then((list) => setDevices(new Map(list.map((d) => [d.id, d])))),
    [],
  );
  const loadFirmware = useCallback(() => apiList("/firmware", pageSize).then(setFirmware), []);
  const loadJobs = useCallback(
    () => apiList("/jobs?active=true", pageSize).then((list) => setJobs(new Map(list.map((j) => [j.id, j])))),
    [],
  );
  const known = useRef(null);
  const loadCredentials = useCallback(
    () =>
      apiList("/credentials", pageSize).then(
        (list) => {
          known.current = new Map(list.map((c) => [c.device, c]));
          setCredentials(known.current);
        },
        (e) => {
          if (e instanceof ApiError && e.status === 401) throw e;
          setCredentials(null);
        },
      ),
    [],
  );
  const reload = useCallback(() => {
    Promise.all([loadDevices(), loadFirmware(), loadJobs(), loadCredentials()]).catch((e) => {
      if (e instanceof ApiError && e.status === 401) onLogout();
      else setError(e);
    });
  }, []);

  const events = useRef(null);
  // A stream the browser gave up on was refused: show the server's reason (e.g. too many streams open).
  const onLive = (state) => {
    setLive(state);
    if (state === "closed")
      streamRefusal().then(
        (refusal) => {
          if (refusal && refusal.status !== 401) setError(refusal);
        },
        () => undefined,
      );
  };
  // Credentials change by request only (here, the CLI, the bridge): read again on each navigation,
  // and soon after a device the list does not have reports (it was provisioned meanwhile).
  const credentialTimer = useRef(null);
  // Each id at most once: a device without a credential on an external broker reports at every wake.
  const asked = useRef(new Set());
  const newcomer = (id) => {
    if (!known.current || known.current.has(id) || asked.current.has(id)) return;
    if (asked.current.size >= 10_000) asked.current.clear();
    asked.current.add(id);
    // Not "not provisioned" before the list was read again: it may have been provisioned since.
    setCredentials((m) => (m && !m.has(id) ? new Map(m).set(id, null) : m));
    if (credentialTimer.current) return;
    credentialTimer.current = setTimeout(() => {
      loadCredentials()
        .catch(() => undefined)
        .finally(() => {
          credentialTimer.current = null;
        });
    }, CREDENTIALS_RELOAD_MS);
  };
  const path = route.join("/");
  const first = useRef(true);
  useEffect(() => {
    if (first.current) first.current = false;
    else loadCredentials().catch(() => undefined);
  }, [path]);
  useEffect(() => {
    api("GET", "/info").then(
      (info) => setBase(info.base),
      () => undefined,
    );
    reload();
    events.current = new LiveEvents((name, data) => {
      if (name === "device") {
        setDevices((m) => new Map(m).set(data.id, data));
        newcomer(data.id);
      } else if (name === "job")
        setJobs((m) => {
          if (isStale(m.get(data.job), data, false)) return m;
          const next = new Map(m);
          next.delete(data.job);
          next.set(data.job, data);
          while (next.size > MAX_LIVE_JOBS) next.delete(next.keys().next().value);
          return next;
        });
      else if (name === "firmware") {
        Promise.all([loadFirmware(), loadDevices()]).catch(setError);
      } else if (name === "reset") reload();
      rolloutFeed(name, data);
    }, onLive);
    return () => {
      events.current?.close();
      clearTimeout(credentialTimer.current);
    };
  }, []);

  const act = async (fn) => {
    setError(null);
    try {
      return await fn();
    } catch (e) {
      setError(e);
      throw e;
    }
  };
  /** Resolves true when the job was created; a refusal shows in the page's error line. */
  const onUpdate = (device, fw, allowDowngrade = false) =>
    act(async () => {
      const job = await api("POST", "/update", {
        json: { device, firmware: fw, ...(allowDowngrade ? { allowDowngrade: true } : {}) },
      });
      setJobs((m) => (isStale(m.get(job.id), job, true) ? m : new Map(m).set(job.id, job)));
      setDevices((m) => {
        const d = m.get(device);
        // The device's event may already name this job, in a later state.
        return d && d.job?.id !== job.id
          ? new Map(m).set(device, { ...d, job: { id: job.id, state: job.state } })
          : m;
      });
    }).then(
      () => true,
      () => false,
    );
  const onCancel = (id) =>
    act(async () => {
      const job = await api("POST", `/jobs/${encodeURIComponent(id)}/cancel`);
      setJobs((m) => (isStale(m.get(job.id), job, true) ? m : new Map(m).set(job.id, job)));
    }).catch(() => undefined);
  const onLine = (fw, concurrency, allowDowngrade) =>
    api("POST", "/update/line", {
      json: { firmware: fw, concurrency, ...(allowDowngrade ? { allowDowngrade: true } : {}) },
    });
  const logout = async () => {
    await api("POST", "/logout").catch(() => undefined);
    events.current?.close();
    onLogout();
  };

  const [page, arg] = route;
  const props = { devices, firmware, jobs, now, onUpdate, onCancel, credentials, base };
  let body;
  if (page === "device" && arg)
    body = html`<${DevicePage} id=${arg} ...${props} onCredentials=${loadCredentials} />`;
  else if (page === "add-device")
    body = html`<${AddDevicePage} key=${arg ?? ""} initialId=${arg} onChanged=${loadCredentials} />`;
  else if (page === "audit") body = html`<${AuditPage} />`;
  else if (page === "apps") body = html`<${AppsPage} version=${firmware} selected=${arg} />`;
  else if (page === "firmware")
    // App releases are in the same store; the Apps page lists them.
    body = html`<${FirmwarePage} firmware=${firmware.filter((f) => f.kind !== "app")} devices=${devices} onChanged=${() => reload()} onLine=${onLine} selected=${arg} />`;
  else if (page === "jobs")
    body = html`<${JobsPage} devices=${devices} jobs=${jobs} firmware=${firmware} onCancel=${onCancel} />`;
  else if (page === "rollouts") body = html`<${RolloutsPage} firmware=${firmware} devices=${devices} />`;
  else if (page === "rollout" && arg) body = html`<${RolloutPage} id=${arg} />`;
  else body = html`<${DevicesPage} ...${props} />`;
  return html`<div class="shell">
    <header>
      <strong class="brand">mpota</strong>
      <nav>
        <a href="#/devices" class=${page === "devices" || page === "device" || page === "add-device" || !page ? "active" : ""}>Devices</a>
        <a href="#/firmware" class=${page === "firmware" ? "active" : ""}>Firmware</a>
        <a href="#/apps" class=${page === "apps" ? "active" : ""}>Apps</a>
        <a href="#/jobs" class=${page === "jobs" ? "active" : ""}>Jobs</a>
        <a href="#/rollouts" class=${page === "rollouts" || page === "rollout" ? "active" : ""}>Rollouts</a>
        <a href="#/audit" class=${page === "audit" ? "active" : ""}>Audit</a>
      </nav>
      <span class=${`live live-${live}`} title="The event stream">${live}</span>
      ${auth === "none" ? null : html`<button class="small logout" onClick=${logout}>Log out</button>`}
    </header>
    <main>
      <${ErrorText} error=${error} />
      ${body}
    </main>
  </div>`;
}

function App() {
  const [session, setSession] = useState(null);
  const check = () =>
    api("GET", "/session").then(setSession, (e) => setSession({ authenticated: false, error: e.message }));
  useEffect(() => {
    void check();
  }, []);
  if (!session) return html`<p class="loading">Loading…</p>`;
  if (!session.authenticated) return html`<${Login} onDone=${check} />`;
  return html`<${Shell} auth=${session.auth} onLogout=${() => setSession({ authenticated: false })} />`;
}

render(html`<${App} />`, document.getElementById("app"));
