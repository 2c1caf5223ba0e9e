# mpota app updates: the job itself (contract v3, op app): the manifest
# and the changed files over HTTP, staged by mpota_stage, progress on ack,
# the switch, reset; and the job's record on flash. It needs of the agent
# only id, _c, _vbat, _pub and mq, so it runs under the agent (the ESP32)
# and in a boot that only updates (mpota_appboot, the ESP8266) alike: it
# imports no mpota_cmd. See README.md and docs/app-updates.md.
import json
import os
import time
from binascii import hexlify
from hashlib import sha256

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


def why(e, at):
    # An error in the words a user reads (the job's log, the dashboard):
    # one raised with words keeps them ("battery low"); one with an errno
    # is at, then the errno's name and number; anything else its repr.
    a = e.args
    if not isinstance(e, OSError) or not a:
        return repr(e)
    if type(a[0]) is not int:
        return str(e)
    t = str(e)  # "[Errno 104] ECONNRESET"; the number alone where the port has no name for it
    return "%s (%serrno %d)" % (at, t.split()[-1] + ", " if t[0] == "[" else "", a[0])


def _alive(a):
    # MQTT 3.1.1 (3.1.2.10): a client sends a packet at least every
    # keep-alive, else the broker closes the connection at 1.5 of them and
    # publishes the will ("offline" in mid-update). A slow file sends
    # nothing for long: a PINGREQ once half the keep-alive has passed, as
    # the agent's poll() does (a.ka, a._ping and a.mq.ping() are its own).
    if a.ka and time.ticks_diff(time.ticks_ms(), a._ping) >= a.ka * 500:
        a.mq.ping()
        a._ping = time.ticks_ms()


def _clean(t):
    return "".join(" " if c < " " else c for c in t)[:200]


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

    def get(u, n, f, what):
        # GET the release's u into f (the manifest's file, a file's stage
        # record): n bytes, or an error in words (why).
        x = j["url"]
        try:
            s, m = H.get(x + u, user, pw)
        except OSError as e:
            raise OSError(why(e, "no connection to " + x.split("/", 3)[2]))
        try:
            if m != n:
                raise H.Refused("the server sends %d bytes of %s instead of %d" % (m, what, n))
            mv = memoryview(buf)
            i = 0
            while i < n:
                _alive(a)
                try:
                    k = s.readinto(mv[: min(len(buf), n - i)])
                    if not k:
                        raise OSError("the server closed")
                except OSError as e:
                    raise OSError("%s at byte %d of %d of %s" % (why(e, "the connection broke"), i, n, what))
                f.write(mv[:k])
                i += k
        finally:
            s.close()

    def fetch(d, size, path, rec):
        get("/file/" + d, size, rec, path)

    try:
        if _low(a):
            raise OSError("battery low")
        if _digest(MAN, buf) != j["sha"]:
            with open(MAN, "wb") as f:
                get("/manifest", j["size"], f, "manifest")
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
            _alive(a)  # a copy or the signature's check can take long too
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
        # An errno not named on the way is the flash's, or the broker link's
        # (a ping, a report): then the ack below cannot go out either.
        e = _clean(why(e, "flash error"))
        print("mpota: job %s stopped at file %d of %d (%s), again in %d s" % (job, p["files"], p["of"], e, w))
        try:
            _ack(a, {"job": job, "error": e, "final": False})
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


def load(a):
    # The pending job (a.aj, or None) from the newer valid copy of its record.
    a.aj = None
    a.an = 0
    a.ai = 1
    for i in (0, 1):
        x = _read(RECS[i])
        if x and x["n"] > a.an:
            a.an = x["n"]
            a.ai = i
            a.aj = x["p"]


def _read(path):
    # mpota_cmd's record format (a hash, then JSON with n), read here so
    # that the update boot goes without mpota_cmd's 5 KB of heap.
    try:
        with open(path) as f:
            d = f.read()
        r = json.loads(d[16:])
        if d[:16] == hexlify(sha256(d[16:]).digest()[:8]).decode() and type(r["n"]) is int:
            return r
    except Exception:
        pass
    return None


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
