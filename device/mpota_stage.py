# mpota app updates on the board: fills the slot that is not running with a
# checked release and switches to it with one write of the loader's record.
# Imported only while updating, so the app's heap does not carry it.
# See docs/app-updates.md.
import os
from binascii import hexlify
from hashlib import sha256

import mpota_loader as L
from mpota_app import LINE, MAXMAN, AppError, Receiver, check, files, pull


def _key(p):
    return p.lower().split("/")


def _blocks(n, bs):
    return (n + bs - 1) // bs


def _used(d, bs):
    # Blocks held by a folder tree (a block per folder, as a directory cluster).
    n = 0
    try:
        for e in os.ilistdir(d):
            p = d + "/" + e[0]
            n += _used(p, bs) if e[1] == 0x4000 else max(1, _blocks(e[3], bs))
        return n + 1
    except OSError:
        return 0


def _clear(d):
    # Removes a folder tree, files first.
    for e in list(os.ilistdir(d)):
        p = d + "/" + e[0]
        if e[1] == 0x4000:
            _clear(p)
        else:
            os.remove(p)
    os.rmdir(d)


def _mkdirs(base, path):
    i = path.find("/")
    while i > 0:
        try:
            os.mkdir(base + "/" + path[:i])
        except OSError:
            pass  # there already
        i = path.find("/", i + 1)


def _digest(path, buf):
    # SHA-256 of a file, read through buf; None if it cannot be read.
    h = sha256()
    try:
        with open(path, "rb") as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    return h.digest()
                h.update(memoryview(buf)[:k])
    except OSError:
        return None


def _holds(path, size, digest, buf):
    # Whether a file already staged is the manifest's: checked again by its
    # size and SHA-256 (reading flash is cheap next to fetching), never trusted.
    try:
        if os.stat(path)[6] != size:
            return False
    except OSError:
        return False
    d = _digest(path, buf)
    return d is not None and hexlify(d).decode() == digest


def stage(manifest, keys, fetch, installed=None, down=False, platform=None, mpy=-1, buf=None):
    # Installs the release whose manifest has been received at the path
    # manifest, in one call: the steps below, to the switch. Returns (name, version).
    for s in steps(manifest, keys, fetch, installed, down, platform, mpy, buf):
        pass
    return s[1], s[2]


def steps(manifest, keys, fetch, installed=None, down=False, platform=None, mpy=-1, buf=None):
    # The same update one file at a time (a generator), so the caller can
    # stop between files (the end of a sleepy device's wake) and report
    # progress. It checks the manifest, checks free space before any write,
    # fills the slot that is not running (files that did not change are
    # copied from the running slot, the others come from fetch(digest, size,
    # path, rec), which writes their bytes into the Receiver rec), then
    # switches with one write of the record. It yields ("check", name,
    # version), ("space", bytes needed, bytes free), then (how, path, size)
    # per file with how "kept" (already staged by an attempt for the same
    # manifest, checked again), "copied" or "fetched", and last ("switch",
    # name, version). A stopped update resumes at the next call for the
    # same manifest; another manifest discards the partial stage. The new
    # app runs from the next boot on; the loader goes back if it fails.
    r = L.read()
    if r and r[3] == "new":
        raise AppError("the running app %s is not confirmed yet: update after it confirms or is rolled back" % L.release(r[1]))
    cur = r[1] if r and r[3] == "ok" else None
    if installed is None and cur:
        # The running release's version, from its manifest: no downgrade without consent.
        installed = L.release(cur).split(" ")[-1]
    name, ver, count, total = check(manifest, keys, installed, down, platform, mpy)
    yield "check", name, ver
    new = "b" if r and r[1] == "a" else "a"
    to = L.ROOT + "/" + new
    st = os.statvfs("/")
    bs = st[1] or st[0]
    need = 3 + _blocks(os.stat(manifest)[6], bs)  # slot folder, record copy, rollback note
    main = last = ""
    for d, size, p in files(manifest):
        need += max(1, _blocks(size, bs))
        i = p.rfind("/")
        if i > 0 and p[:i] != last:
            need += p.count("/")  # its folders (counted again when the order revisits them)
            last = p[:i]
        if p in ("main.py", "main.mpy"):
            main = p
    if not main:
        raise AppError("%s %s has no main.py or main.mpy for the loader to start" % (name, ver))
    free = st[4] + _used(to, bs)
    if need > free:
        raise AppError("%s %s needs %d bytes; %d are free" % (name, ver, need * bs, free * bs))
    yield "space", need * bs, free * bs
    # Nothing written before this line. The slot being filled is neither
    # running nor the way back: a cut from here on leaves the record as it was.
    buf = buf or bytearray(512)
    # The slot's manifest copy names what it holds, and is written first: a
    # partial stage of this very manifest is resumed (each file it holds is
    # checked again before it counts); anything else there is removed.
    mine = _digest(to + "/.manifest", buf)
    resume = mine is not None and mine == _digest(manifest, buf)
    if not resume:
        try:
            os.mkdir(L.ROOT)
        except OSError:
            pass
        if _used(to, bs):
            _clear(to)
        os.mkdir(to)
        with open(manifest, "rb") as f:
            pull(f, Receiver(to + "/.manifest", MAXMAN + LINE, None), buf)
    old = files(L.ROOT + "/" + cur + "/.manifest") if cur else iter(())
    have = next(old, None)
    for d, size, p in files(manifest):
        while have and _key(have[2]) < _key(p):
            have = next(old, None)
        dst = to + "/" + p
        if resume and _holds(dst, size, d, buf):
            yield "kept", p, size
            continue
        _mkdirs(to, p)
        if have and have[2] == p and have[0] == d:
            try:
                # Copied through a Receiver, so checked like a fetched file.
                with open(L.ROOT + "/" + cur + "/" + p, "rb") as f:
                    pull(f, Receiver(dst, size, d, p), buf)
                yield "copied", p, size
                continue
            except (AppError, OSError):
                pass  # a damaged or missing file of the running app: fetched instead
        rec = Receiver(dst, size, d, p)
        try:
            fetch(d, size, p, rec)
        except Exception:
            # A transfer that broke: what arrived stays, to be checked (and
            # fetched again) by the next attempt; the handle is not left open.
            rec.f.close()
            raise
        rec.close()
        yield "fetched", p, size
    try:
        os.remove(L.NOTE)
    except OSError:
        pass
    L.write(r[0] + 1 if r else 1, new, cur or "-", "new", 0)
    yield "switch", name, ver
