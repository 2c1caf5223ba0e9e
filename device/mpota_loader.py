# mpota's app loader. It is no part of any app and never changes: main.py
# runs `import mpota_loader; mpota_loader.run()`. It starts the app in the
# active slot (/app/a or /app/b) that the record names, counts the boots of
# a new app until the app calls confirm(), and goes back to the previous
# slot when the new app raises at start-up or is not confirmed within TRIES
# boots. Why two slots and a record in two copies: docs/app-updates.md.
import os
import sys
from binascii import hexlify
from hashlib import sha256

ROOT = "/app"
NOTE = ROOT + "/rollback"  # why the last new app was given up; the agent reports it
TRIES = 3
MAGIC = "mpota-slot/1"
BOOT = "/mpota_job.boot"  # the agent asks for a boot that only updates the app
updated = False  # that boot ran, before the app (the agent then waits before asking again)


def _sum(body):
    return hexlify(sha256(body).digest()[:8]).decode()


def read():
    # The newest valid copy of the record: [seq, active, prev, state, boots], or None.
    best = None
    for i in (0, 1):
        try:
            with open("%s/rec.%d" % (ROOT, i), "rb") as f:
                t = f.read(96)
            p = t.split()
            if len(p) != 7 or p[0] != MAGIC.encode() or _sum(b" ".join(p[:6])) != p[6].decode():
                continue
            r = [int(p[1]), p[2].decode(), p[3].decode(), p[4].decode(), int(p[5])]
        except (OSError, ValueError):
            continue  # missing, cut short or torn: the other copy holds the record
        if best is None or r[0] > best[0]:
            best = r
    return best


def write(seq, active, prev, state, boots):
    # Record seq goes to copy seq & 1: never over the newest valid copy, so a
    # cut at any moment of this write leaves that one to be read.
    body = ("%s %d %s %s %s %d" % (MAGIC, seq, active, prev, state, boots)).encode()
    with open("%s/rec.%d" % (ROOT, seq & 1), "wb") as f:
        f.write(body + b" " + _sum(body).encode() + b"\n")


def release(slot):
    # "name version" of the release in a slot, from its manifest.
    try:
        with open("%s/%s/.manifest" % (ROOT, slot), "rb") as f:
            f.readline(80)
            n = f.readline(80)[5:-1].decode()
            return n + " " + f.readline(80)[8:-1].decode()
    except (OSError, ValueError):
        return "slot " + slot


def confirm():
    # Called by a new app once it works: it stays, and the loader stops counting.
    r = read()
    if r and r[3] == "new":
        write(r[0] + 1, r[1], r[2], "ok", 0)


def _line(e):
    # The exception's last "File ..., line N" and its message, on one line.
    import io

    b = io.StringIO()
    sys.print_exception(e, b)
    at = last = ""
    for t in b.getvalue().split("\n"):
        t = t.strip()
        if t[:5] == "File ":
            at = t + ": "
        elif t and t[:9] != "Traceback":
            last = t
    return (at + last)[:240]


def _back(r, why):
    # The new app failed: note why (first, so a cut before the record is
    # redone at the next boot), then name the previous slot. Without one the
    # app is marked bad and not started again.
    with open(NOTE, "w") as f:
        f.write("rolled back %s: %s\n" % (release(r[1]), why))
    if r[2] == "-":
        write(r[0] + 1, r[1], "-", "bad", 0)
    else:
        write(r[0] + 1, r[2], "-", "ok", 0)
    print("mpota_loader: rolled back", release(r[1]) + ":", why)


def rolled_back():
    # The note of the last rollback, or None (the agent reports it).
    try:
        with open(NOTE) as f:
            return f.readline(300).strip()
    except OSError:
        return None


def run(tries=TRIES):
    global updated
    if not updated:
        try:
            os.remove(BOOT)  # first: a boot that fails in the update starts the app next time
            updated = True
        except OSError:
            pass
        if updated:
            _update()
    r = read()
    if r is None or r[3] == "bad":
        print("mpota_loader: no app to start")
        return
    if r[3] == "new":
        if r[4] >= tries:
            _back(r, "not confirmed within %d boots" % tries)
            return run(tries)
        r = [r[0] + 1, r[1], r[2], "new", r[4] + 1]
        write(*r)
    d = "%s/%s" % (ROOT, r[1])
    try:
        try:
            os.stat(d + "/main.py")
        except OSError:
            os.stat(d + "/main.mpy")
    except OSError:
        if r[3] != "new":
            raise
        _back(r, "the app has no main.py")
        return run(tries)
    sys.path.insert(0, d + "/lib")
    sys.path.insert(0, d)
    try:
        __import__("main")
    except Exception as e:
        if r[3] != "new":
            raise
        give_up(e)
        raise


def give_up(e):
    # A new app failed: at import (above), or in the agent it ships (its
    # slot is first on sys.path), for main.py after run(). Back to the
    # previous app at once; returns only if the app is confirmed.
    r = read()
    if r and r[3] == "new":
        _back(r, _line(e))
        # Modules of the failed app may be loaded: start the previous one afresh.
        import machine

        machine.reset()


def _update():
    # The pending app job, with the heap to itself: no app, no agent yet
    # (mpota_appboot). It resets into the new app, or returns and the app
    # starts as usual; its modules are dropped either way.
    try:
        import mpota_appboot

        mpota_appboot.run()
    except Exception as e:
        sys.print_exception(e)
    for m in ("mpota_appboot", "mpota_appjob", "mpota_stage", "mpota_app", "mpota_http"):
        sys.modules.pop(m, None)
    import gc

    gc.collect()
