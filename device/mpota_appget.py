# mpota app updates, the agent's side (contract v3, op app): what the state
# says of the app, the checks of a command, and where the job runs: here,
# or (a board short of heap, the ESP8266) in a boot that only updates
# (mpota_appboot). The job itself is mpota_appjob. mpota_agent.py imports
# this module only while it has app work and drops it after. See README.md
# and docs/app-updates.md.
import os
import sys
import time

import mpota_appjob as J
import mpota_loader as L
from mpota_appjob import MAN, _ack, _clean, _digest, _forget, _save
from mpota_cmd import HEX, ID, _int, _ok


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
    J.load(a)
    j = a.aj
    if j:
        note = L.rolled_back()
        if ap.get("id") == j["sha"]:
            j["end"] = 1
        elif note and note.startswith("rolled back %s %s:" % (j["name"], j["ver"])):
            ap["rb"] = {"job": j["job"], "why": _clean(note)}
            j["end"] = 1
    a.at = j.get("t", 0) if j else 0  # tries that broke off (an update boot counts its own)
    # The next try is due (the agent checks before loading this module): at
    # once, or after the back-off when an update boot tried in this boot.
    a.ad = time.ticks_add(time.ticks_ms(), 1000 * min(60, 1 << a.at) if getattr(L, "updated", 0) else 0)


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
        # Its command (the last one taken) stays retained until the server
        # has read the state just sent, so the broker hands it over again
        # now: mpota_cmd ignores that seq without a "replayed" note.
        a.g.done = a.g.seq
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


def run(a):
    # Runs the pending job here, or in a boot that only updates: the agent
    # and mpota_cmd (about 13 KB as .py) leave the heap to the update, which
    # an ESP8266 needs (docs/app-updates.md "Heap"). APP_UPDATE_BOOT says
    # which; by default the ESP8266 reboots for it.
    if not (a._c("APP_UPDATE_BOOT", sys.platform == "esp8266") and hasattr(L, "BOOT")):
        return J.run(a)  # (a loader older than the update boot: here too)
    if L.updated and a.sleep_s:
        return  # this wake's update boot has run: the rest waits for the next wake
    with open(L.BOOT, "w"):
        pass
    print("mpota: job", a.aj["job"], "goes on in a boot that only updates")
    try:
        a.mq.disconnect()
    except Exception:
        pass
    a.up = False
    import machine

    machine.reset()
