# mpota app updates, the agent's side (contract v3, op app): what the state
# says of the app, the pending job on flash, and the job itself: the
# manifest and the changed files over HTTP, staged by mpota_stage, progress
# on ack, the switch, reset. mpota_agent.py imports this module only while
# it has app work and drops it after. See README.md and docs/app-updates.md.
import json
import os
import sys
import time
from binascii import hexlify
from hashlib import sha256

import mpota_loader as L
from mpota_cmd import HEX, ID, _int, _ok, _read

# The two copies of the pending job's record, written in turn (as mpota_cmd's seq).
RECS = ("/mpota_job.0", "/mpota_job.1")
MAN = "/mpota_job.man"  # the job's manifest as received
EVERY = 65536  # at least one progress report per 64 KiB staged
WAKE_MS = 20000  # a sleepy board's wake ends here (APP_WAKE_MS); it goes on at the next wake


def _digest(path, buf):
    # SHA-256 (hex) of a file, None if it cannot be read.
    h = sha256()
    try:
        with open(path, "rb") as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    return hexlify(h.digest()).decode()
                h.update(memoryview(buf)[:k])
    except OSError:
        return None


def _used(d, bs):
    # Bytes a slot holds, in whole blocks (as mpota_stage counts them).
    n = 0
    try:
        for e in os.ilistdir(d):
            n += _used(d + "/" + e[0], bs) if e[1] == 0x4000 else max(1, (e[3] + bs - 1) // bs) * bs
        return n + bs
    except OSError:
        return 0


def _ver(s):
    return [int(n) for n in s.split(".")]


def _clean(t):
    return "".join(" " if c < " " else c for c in t)[:200]


def boot(a):
    # At start: a.ap (the state's app field) and a.aj (the pending job, or
    # None). A job whose release runs now is over; one whose release the
    # loader gave up (its note names it) is reported once as rb.
    r = L.read()
    buf = bytearray(512)
    ap = {"board": sys.platform}
    m = getattr(sys.implementation, "_mpy", None)
    if m is not None:
        ap["mpy"] = m
    cur = r[1] if r and r[3] != "bad" else None
    if cur:
        i = _digest("%s/%s/.manifest" % (L.ROOT, cur), buf)
        nv = L.release(cur).split(" ")
        if i and len(nv) == 2 and nv[0] != "slot":
            ap["name"], ap["ver"], ap["id"] = nv[0], nv[1], i
    st = os.statvfs("/")
    bs = st[1] or st[0]
    ap["free"] = st[4] * bs + _used("%s/%s" % (L.ROOT, "b" if cur == "a" else "a"), bs)
    a.ap = ap
    a.aj = j = None
    a.an = 0
    a.ai = 1
    for i in (0, 1):
        x = _read(RECS[i])
        if x and x["n"] > a.an:
            a.an = x["n"]
            a.ai = i
            j = x["p"]
    if j:
        note = L.rolled_back()
        if ap.get("id") == j["sha"]:
            j["end"] = 1
        elif note and note.startswith("rolled back %s %s:" % (j["name"], j["ver"])):
            ap["rb"] = {"job": j["job"], "why": _clean(note)}
            j["end"] = 1
    a.aj = j
    a.at = 0  # tries that broke off
    a.ad = time.ticks_ms()  # the next try is due (the agent checks before loading this module)


def fields(a, c):
    # Rule 1 for op app (mpota_cmd checks the rest): name, version (1 to 4
    # numbers), sha (64 lowercase hex: the manifest's), size, url
    # ^https?://[^\s,]{1,240}$ (ASCII blanks as \s).
    n = c.get("name")
    v = c.get("ver")
    h = c.get("sha")
    u = c.get("url")
    if not (
        _ok(c.get("job"), ID, 64)
        and _ok(n, "abcdefghijklmnopqrstuvwxyz0123456789_-", 32)
        and n[0].isalpha()
        and _ok(v, "0123456789.", 39)
        and _int(c.get("down"), 0, 1)
        and _int(c.get("size"), 1, 66256)  # 64 KiB of lines and the signature line
        and _ok(h, HEX, 64)
        and len(h) == 64
        and isinstance(u, str)
    ):
        return False
    v = v.split(".")
    for x in v:
        if not 0 < len(x) <= 9 or x[0] == "0" and x != "0":
            return False
    u = u.split("://", 1) + [""]
    for ch in u[1]:
        if ch <= " " or ch == ",":
            return False
    return len(v) <= 4 and u[0] in ("http", "https") and 0 < len(u[1]) <= 240


def online(a):
    # After the first state went out: the app that runs is kept (the loader
    # stops counting its boots); a job that ended (done, or rolled back and
    # now reported) is forgotten, with the loader's note.
    try:
        L.confirm()
        a.aok = True
    except OSError as e:
        print("mpota: cannot confirm the app:", repr(e))  # again at the next connect
    if a.aj and a.aj.get("end"):
        print("mpota: job", a.aj["job"], "rolled back" if "rb" in a.ap else "done")
        _forget(a)
        try:
            os.remove(L.NOTE)
        except OSError:
            pass
    a.ap.pop("rb", None)


def take(a, c):
    # A signed op app that passed rules 1-5.
    g = a.g
    job = c["job"]
    ap = a.ap
    if c["sha"] == ap.get("id"):
        g.commit(c)
        print("mpota: cmd", job, "is for the running app, ignored")
        return
    err = _refuse(a, c)
    if not g.commit(c):
        return
    if err:
        if a.aj:
            _forget(a)  # an older job is over: the server has moved on
        return _ack(a, {"job": job, "ready": False, "error": err})
    j = {"job": job}
    for k in ("name", "ver", "down", "sha", "size", "url"):
        j[k] = c[k]
    old = a.aj
    a.aj = j
    try:
        _save(a)
    except OSError as e:
        a.aj = old
        return _ack(a, {"job": job, "ready": False, "error": "cannot record the job on flash: %r" % e})
    # Another release's manifest is no use now; a note of an earlier
    # rollback would read as this job's at the next boot.
    for f in (MAN if old and old["sha"] != j["sha"] else None, L.NOTE):
        try:
            f and os.remove(f)
        except OSError:
            pass
    _ack(a, {"job": job, "ready": True, "pull": True})
    a._pub("status", "ota", True)
    a.at = 0
    run(a)


def _refuse(a, c):
    v = a._vbat()
    if a.vmin and v is not None and v < a.vmin:
        return "battery low"
    r = L.read()
    if r and r[3] == "new":
        return "the running app %s is not confirmed yet" % L.release(r[1])
    i = a.ap.get("ver")
    if i and not c["down"] and _ver(c["ver"]) < _ver(i):
        return "downgrade refused: %s %s is older than the installed %s (allow the downgrade)" % (c["name"], c["ver"], i)
    return None


def _low(a):
    v = a._vbat()
    return a.vmin and v is not None and v < a.vmin


def run(a):
    # Fetches and stages the pending job; at the switch reports done and
    # resets. Returns when the job failed or stopped (it is then kept and
    # goes on at the next try, boot or wake).
    import mpota_http as H
    import mpota_stage as S
    from mpota_app import AppError

    j = a.aj
    job = j["job"]
    buf = bytearray(512)
    user = a.id
    pw = a._c("MQTT_PASSWORD")
    end = a.sleep_s > 0 and time.ticks_add(a.t0, a._c("APP_WAKE_MS", WAKE_MS))
    p = {"job": job, "got": 0, "total": 0, "files": 0, "of": 0}

    def fetch(d, size, path, rec):
        s, n = H.get("%s/file/%s" % (j["url"], d), user, pw)
        try:
            if n != size:
                raise H.Refused("the server sends %d bytes of %s, the manifest says %d" % (n, path, size))
            mv = memoryview(buf)
            while rec.n < size:
                k = s.readinto(mv[: min(len(buf), size - rec.n)])
                if not k:
                    raise OSError("the server closed at byte %d of %d of %s" % (rec.n, size, path))
                rec.write(mv[:k])
        finally:
            s.close()

    try:
        if _low(a):
            raise OSError("battery low")
        if _digest(MAN, buf) != j["sha"]:
            s, n = H.get(j["url"] + "/manifest", user, pw)
            try:
                if n != j["size"]:
                    raise H.Refused("the server sends a manifest of %d bytes, the command says %d" % (n, j["size"]))
                with open(MAN, "wb") as f:
                    mv = memoryview(buf)
                    while n:
                        k = s.readinto(mv[: min(len(buf), n)])
                        if not k:
                            raise OSError("the server closed %d bytes before the manifest's end" % n)
                        f.write(mv[:k])
                        n -= k
            finally:
                s.close()
            if _digest(MAN, buf) != j["sha"]:
                raise AppError("the manifest's SHA-256 is not the command's: not the release the job names")
        with open(MAN, "rb") as f:
            for _ in range(7):
                t = f.readline(80)
                if t[:6] == b"files ":
                    t = t.split()
                    p["of"], p["total"] = int(t[1]), int(t[2])
        last = 0
        for st in S.steps(MAN, a._c("APP_KEYS", ()), fetch, down=bool(j["down"]), buf=buf):
            w = st[0]
            if w == "switch":
                break
            if w in ("kept", "copied", "fetched"):
                p["files"] += 1
                p["got"] += st[2]
            if w == "check" or w == "space":
                if w == "space":
                    _ack(a, p)
                continue
            if w == "fetched" or p["got"] - last >= EVERY or p["files"] % 8 == 0:
                if p["files"] < p["of"]:
                    _ack(a, p)
                    last = p["got"]
            if p["files"] < p["of"]:
                # Only a fetch costs the wake's time: kept and copied files cost no radio.
                if w == "fetched" and end and time.ticks_diff(time.ticks_ms(), end) >= 0:
                    print("mpota: job %s stops at file %d of %d: the wake is over" % (job, p["files"], p["of"]))
                    return
                if _low(a):
                    raise OSError("battery low")
    except (AppError, H.Refused) as e:
        # The release itself is wrong (or the server will not give it): trying again cannot help.
        _forget(a)
        _ack(a, {"job": job, "error": _clean(str(e)), "final": True})
        a._pub("status", "online", True)
        return
    except Exception as e:
        # The server or the WiFi went away, or flash failed: what is
        # verified stays on flash; again after 2, 4 .. 60 s (a sleeper at its next wake).
        a.at += 1
        w = min(60, 1 << a.at)
        a.ad = time.ticks_add(time.ticks_ms(), w * 1000)
        print("mpota: job %s stopped at file %d of %d (%r), again in %d s" % (job, p["files"], p["of"], e, w))
        try:
            _ack(a, {"job": job, "error": _clean(repr(e)), "final": False})
        except Exception:
            pass
        return
    # The switch is made: the new app starts at the next boot, on trial.
    p["done"] = True
    try:
        _ack(a, p)
        a.mq.disconnect()
        os.remove(MAN)  # else the next boot does: the job is over once the new app runs
    except Exception as e:
        print("mpota:", repr(e))  # reset anyway: the next state tells the server
    a.up = False
    import machine

    machine.reset()


def _ack(a, d):
    a._pub("ack", json.dumps(d))


# --- the record on flash ---


def _save(a):
    # As mpota_cmd's seq record: the copy not holding the current record is
    # written, so a power cut leaves the old record or the new one.
    a.an += 1
    b = json.dumps({"n": a.an, "p": a.aj})
    i = 1 - a.ai
    with open(RECS[i], "w") as f:
        f.write(hexlify(sha256(b).digest()[:8]).decode() + b)
    a.ai = i


def _forget(a):
    # The older copy first: a cut between leaves the newer one, never an older.
    a.aj = None
    for p in (RECS[1 - a.ai], RECS[a.ai], MAN):
        try:
            os.remove(p)
        except OSError:
            pass
