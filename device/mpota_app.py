# mpota app releases on the board: checks a signed manifest, then each file
# against it while its bytes arrive, in small pieces. Nothing is trusted
# before its check passes. See docs/app-updates.md.
import os
import sys
from binascii import a2b_base64, b2a_base64, hexlify, unhexlify
from hashlib import sha256

HEAD = b"mpota-app/1\n"
LINE = 720  # longest manifest line: the signature of a 4096-bit key
MAXMAN = 65536  # longest manifest, signature line excluded
MAXFILES = 256
MAXFILE = 1048576
MAXPATH = 96
DEPTH = 8
CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
HEX = "0123456789abcdef"
NAME = "abcdefghijklmnopqrstuvwxyz0123456789_-"
# The loader and the per-device settings: never part of an app.
RESERVED = (
    "boot.py",
    "boot.mpy",
    "mpota_loader.py",
    "mpota_loader.mpy",
    "mpota_config.py",
    "mpota_config.mpy",
)
# DER DigestInfo of SHA-256 (RFC 8017, 9.2 note 1).
INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


class AppError(Exception):
    pass


def _kid(h):
    # Key id, as for command keys: hex of the first 4 bytes of SHA-256 of the modulus.
    return hexlify(sha256(unhexlify(h)).digest()[:4]).decode()


def _rsa(n, sig, digest):
    # RSASSA-PKCS1-v1_5, e = 65537: sig^e mod n by square and multiply (the
    # ESP8266 has no 3-argument pow), then the whole encoded block compared
    # byte for byte: no padding parser to fool.
    k = len(n)
    if len(sig) != k or k < 256:
        return False
    n = int.from_bytes(n, "big")
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    m = s
    for _ in range(16):
        m = m * m % n
    m = m * s % n
    return m.to_bytes(k, "big") == b"\x00\x01" + b"\xff" * (k - 54) + b"\x00" + INFO + digest


def _hex(s, n):
    if len(s) != n:
        return False
    for c in s:
        if c not in HEX:
            return False
    return True


def _num(s, hi):
    # A decimal without leading zeros, 0..hi; else None.
    if not s or len(s) > 9 or (s[0] == "0" and len(s) > 1):
        return None
    for c in s:
        if c not in "0123456789":
            return None
    v = int(s)
    return v if v <= hi else None


def version(s):
    # "1.4.0" as (1, 4, 0, 0): 1 to 4 numbers; None if malformed.
    p = s.split(".")
    if len(p) > 4:
        return None
    v = [_num(x, 999999999) for x in p]
    if None in v:
        return None
    return tuple(v + [0] * (4 - len(v)))


def path_problem(p):
    # Why p cannot be a file of an app (docs/app-updates.md), or None.
    if not p or len(p) > MAXPATH:
        return "its length is not 1 to %d" % MAXPATH
    if p[0] == "/" or "\\" in p:
        return "it is absolute or holds a backslash"
    seg = p.split("/")
    if ".." in seg:
        return "it climbs out of the app"
    if len(seg) > DEPTH:
        return "it is more than %d levels deep" % DEPTH
    for s in seg:
        if not s or s[0] == ".":
            return "it has an empty or hidden part"
        for c in s:
            if c not in CHARS:
                return "it holds a character other than A-Z a-z 0-9 . _ -"
    if p.lower() in RESERVED:
        return "it belongs to the device, not to an app"
    return None


def _after(a, b):
    # Why b cannot follow a: the manifest lists paths strictly ascending by
    # their lowercased parts, so a duplicate (also without case, as FAT sees
    # names) or a file that is also a folder shows up next to the previous one.
    x = a.lower()
    y = b.lower()
    if x.split("/") >= y.split("/"):
        return "out of order or listed twice"
    if y.startswith(x + "/"):
        return "a file of that name is listed"
    return None


def _lines(path):
    # The manifest's lines, each checked for length.
    with open(path, "rb") as f:
        while True:
            line = f.readline(LINE + 1)
            if not line:
                return
            if len(line) > LINE or line[-1] != 10:
                raise AppError("manifest: a line is too long or cut short")
            yield line


def _signature(path, keys):
    # Pass 1: hash every line before "sig", then check the signature.
    h = sha256()
    size = 0
    sig = None
    for line in _lines(path):
        if sig is not None:
            raise AppError("manifest: lines after the signature")
        if not size and line != HEAD:
            raise AppError("manifest: not an mpota app manifest")
        if line[:4] == b"sig ":
            sig = line
            continue
        size += len(line)
        if size > MAXMAN:
            raise AppError("manifest: larger than %d bytes" % MAXMAN)
        h.update(line)
    if sig is None:
        raise AppError("manifest: no signature (cut short?)")
    p = sig.split()
    kid = p[1].decode() if len(p) == 3 else ""
    n = None
    for k in keys:
        if _kid(k) == kid:
            n = unhexlify(k)
    if n is None:
        raise AppError("manifest: signed by key %s, which this board does not trust" % kid)
    try:
        s = a2b_base64(p[2])
        ok = b2a_base64(s)[:-1] == p[2]
    except Exception:
        ok = False
    if not ok or not _rsa(n, s, h.digest()):
        raise AppError("manifest: the signature does not verify with key %s (changed after signing?)" % kid)
    return kid


def _mpy(line, dev):
    # Can this board load the release's .mpy files? dev is sys.implementation._mpy.
    p = line.split()
    if p[1] == "-":
        return None
    if dev is None:
        return "this firmware does not report its .mpy version"
    if int(p[1]) != dev & 0xFF:
        return ".mpy version %s; this board loads version %d" % (p[1], dev & 0xFF)
    if len(p) > 2:
        arch = int(p[2])
        mine = dev >> 10
        # Thumb code of a lower level runs on a higher one (py/persistentcode.h).
        thumb = 4 <= arch <= mine <= 8
        if not (arch == mine or thumb) or int(p[3]) != (dev >> 8) & 3:
            return "native code for architecture %d.%s; this board is %d.%d" % (arch, p[3], mine, (dev >> 8) & 3)
    return None


def check(path, keys, installed=None, down=False, platform=None, mpy=-1):
    # Checks the manifest file at path: signed by one of keys (moduli, hex),
    # every line by its rule, for this board, not older than installed
    # (unless down). Returns (name, version, files, bytes); raises AppError.
    if platform is None:
        platform = sys.platform
    if mpy == -1:
        mpy = getattr(sys.implementation, "_mpy", None)
    try:
        _signature(path, keys)
        return _content(path, installed, down, platform, mpy)
    except (ValueError, IndexError):
        # Signed, yet malformed: a signer's bug is no reason to crash.
        raise AppError("manifest: a malformed line")


def _content(path, installed, down, platform, mpy):
    # Pass 2, over the signed lines only: nothing here is read before the signature passed.
    name = ver = prev = None
    count = want = seen = total = i = 0
    for line in _lines(path):
        t = line[:-1].decode()
        i += 1
        if i == 2:
            name = t[5:] if t[:5] == "name " else None
            for c in name or "":
                if c not in NAME:
                    name = None
        elif i == 3:
            ver = t[8:] if t[:8] == "version " else None
            if not name or len(name) > 32 or not ver or version(ver) is None:
                raise AppError("manifest: no valid name or version")
        elif i == 4:
            if t[:7] != "boards " or platform not in t[7:].split():
                raise AppError("%s %s is for boards %s; this board is %s" % (name, ver, t[7:], platform))
        elif i == 5:
            why = _mpy(t, mpy) if t[:4] == "mpy " else "no mpy line"
            if why:
                raise AppError("%s %s: %s" % (name, ver, why))
        elif i == 6:
            p = t.split()
            count = _num(p[1], MAXFILES) if len(p) == 3 and p[0] == "files" else None
            want = _num(p[2], MAXFILES * MAXFILE) if count else None
            if not count or want is None:
                raise AppError("manifest: no valid files line")
        elif i > 6 and t[:4] != "sig ":
            p = t.split(" ")
            size = _num(p[1], MAXFILE) if len(p) == 3 and _hex(p[0], 64) else None
            if size is None:
                raise AppError("manifest: a malformed file line")
            why = path_problem(p[2]) or (prev and _after(prev, p[2]))
            if why:
                raise AppError("manifest: the path %s is refused: %s" % (p[2][:MAXPATH], why))
            prev = p[2]
            seen += 1
            total += size
    if seen != count or total != want:
        raise AppError("manifest: the files line does not match the files listed")
    old = installed and version(installed)
    if old and not down and version(ver) < old:
        raise AppError("%s %s is older than the installed %s: a downgrade needs the owner's consent" % (name, ver, installed))
    return name, ver, count, total


def files(path):
    # (digest hex, size, path) of each file of a checked manifest.
    i = 0
    for line in _lines(path):
        i += 1
        if i > 6 and line[:4] != b"sig ":
            p = line[:-1].decode().split(" ")
            yield p[0], int(p[1]), p[2]


class Receiver:
    # One file arriving in pieces (an MQTT message, a socket read): written
    # to dst and hashed on the way. close() keeps it only when its size and
    # SHA-256 are the manifest's; otherwise the file is removed and AppError
    # says why. digest None: only the size bound (a manifest on its way in).
    def __init__(self, dst, size, digest, name=None):
        self.dst = dst
        self.size = size
        self.digest = digest
        self.name = name or dst
        self.n = 0
        self.h = sha256()
        self.f = open(dst, "wb")

    def write(self, b):
        self.n += len(b)
        if self.n > self.size:
            self._fail("more than the %d bytes expected" % self.size)
        self.h.update(b)
        self.f.write(b)

    def close(self):
        self.f.close()
        if self.digest is None:
            return
        if self.n != self.size:
            self._fail("%d of its %d bytes arrived" % (self.n, self.size))
        if hexlify(self.h.digest()).decode() != self.digest:
            self._fail("its SHA-256 differs from the manifest's")

    def _fail(self, why):
        # A close() here may commit a partial file (LittleFS, FAT): remove it.
        try:
            self.f.close()
        except OSError:
            pass
        try:
            os.remove(self.dst)
        except OSError:
            pass
        raise AppError("%s: %s; discarded" % (self.name, why))


def pull(stream, rec, buf):
    # Copies a stream into a Receiver through buf (a bytearray), then closes it.
    mv = memoryview(buf)
    while rec.n < rec.size:
        k = stream.readinto(mv[: min(len(buf), rec.size - rec.n)])
        if not k:
            break
        rec.write(mv[:k])
    rec.close()
