# mpota signed commands (MQTT contract v2; v3: op pull, ESP32, op app),
# used by mpota_agent.py: checks them and keeps what it accepted in flash.
import json
from binascii import a2b_base64, b2a_base64, hexlify, unhexlify
from hashlib import sha256

# A seq this far above the highest accepted is "from the future".
FUTURE = 100000
MAX = 9007199254740991  # 2**53 - 1
# DER DigestInfo of SHA-256 (RFC 8017, 9.2 note 1).
INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
ID = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
HEX = "0123456789abcdef"
VER = ID + ".+"
# The two copies of the record (see Guard._save).
SLOTS = ("/mpota_seq.0", "/mpota_seq.1")


def _ok(s, chars, n):
    # s is a str of 1..n characters, all from chars.
    if not isinstance(s, str) or not 0 < len(s) <= n:
        return False
    for ch in s:
        if ch not in chars:
            return False
    return True


def _int(v, lo, hi):
    return type(v) is int and lo <= v <= hi  # not bool, not float


def keyhex(h):
    # A modulus in lowercase hex: whole bytes, no leading zero, 2048-4096 bits.
    return _ok(h, HEX, 1024) and len(h) >= 512 and not len(h) & 1 and h[:2] != "00"


def kid(h):
    # Key id: hex of the first 4 bytes of SHA-256 of the modulus.
    return hexlify(sha256(unhexlify(h)).digest()[:4]).decode()


def verify(n, msg, sig):
    # RSASSA-PKCS1-v1_5 / SHA-256, e = 65537: sig^e mod n by squaring (no
    # 3-argument pow on the ESP8266); the whole block compared: no parser to fool.
    k = len(n)
    if len(sig) != k or k < 64:
        return False
    n = int.from_bytes(n, "big")
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    m = s
    for _ in range(16):
        m = m * m % n
    m = m * s % n
    h = sha256(msg).digest()
    return m.to_bytes(k, "big") == b"\x00\x01" + b"\xff" * (k - 54) + b"\x00" + INFO + h


def _sig(s, k):
    # The k signature bytes from canonical base64, else None.
    if not isinstance(s, str) or len(s) != (k + 2) // 3 * 4:
        return None
    s = s.encode()
    try:
        b = a2b_base64(s)
        if len(b) == k and b2a_base64(b)[:-1] == s:
            return b
    except Exception:
        pass
    return None


def _parts(t):
    # Digit runs as (1, int), letter runs as (0, str); others separate.
    p = [""]
    j = 0
    for ch in t:
        k = ch.isdigit() - ch.isalpha()
        if k != j:
            p.append("")
        if k:
            p[-1] += ch
        j = k
    return [(1, int(r)) if r.isdigit() else (0, r) for r in p if r]


def older(a, b):
    # a before b: the server's version-order.ts rule by rule, for ASCII.
    v = []
    for s in a, b:
        s = s.strip().lower()
        if s[:1] == "v" and s[1:2].isdigit():
            s = s[1:]
        s = s.split("+")[0].replace("~", "-").split("-", 1) + [""]
        v.append([_parts(s[0]), len(s) < 3, _parts(s[1])])  # release, no tag, tag
    a, b = v
    for i in 0, 2:
        n = len(b[i]) - len(a[i])  # a missing part is 0
        a[i] += [(1, 0)] * n
        b[i] += [(1, 0)] * -n
    return a < b


def _fields(c, pull):
    # Rule 1 for a signed command: every field there and well-formed; ops
    # pull and app (v3) only where the agent takes them: pull(c) checks their own.
    op = c["op"]
    v = 3 if op in ("pull", "app") else 2
    if not (
        _int(c.get("v"), v, v)
        and _ok(c.get("dev"), ID, 64)
        and _int(c.get("seq"), 1, MAX)
        and _ok(c.get("kid"), HEX, 8)
        and len(c["kid"]) == 8
        and isinstance(c.get("sig"), str)
    ):
        return False
    if op == "keys":
        k = c.get("keys")
        if not isinstance(k, list) or not 0 < len(k) <= 3:
            return False
        for h in k:
            if not keyhex(h):
                return False
        return True
    # An app names no firmware; its own rules are narrower than these.
    return (
        (op == "ota" or v == 3 and pull and pull(c))
        and _ok(c.get("job"), ID, 64)
        and (op == "app" or _ok(c.get("fw"), HEX, 32) and len(c["fw"]) == 32)
        and _int(c.get("size"), 0, MAX)
        and _ok(c.get("ver"), VER, 32)
        and _int(c.get("down"), 0, 1)
    )


def _v1(c):
    # An unsigned (contract v1) command.
    f = c["fw"]
    ok = c["op"] == "ota" and isinstance(c["job"], str) and isinstance(f, str)
    return ok and len(f) == 32 and isinstance(c.get("size", 0), int)


def message(c):
    # The signed bytes: the fields one per line, no trailing newline.
    if c["op"] == "keys":
        t = ",".join(c["keys"])
    elif c["op"] == "app":
        t = "%s\n%s\n%s\n%d\n%s\n%d\n%s" % (c["job"], c["name"], c["ver"], c["down"], c["sha"], c["size"], c["url"])
    else:
        t = "%s\n%s\n%d\n%s\n%d" % (c["job"], c["fw"], c["size"], c["ver"], c["down"])
        if c["v"] == 3:
            t += "\n%s\n%s" % (c["sha"], c["url"])
    return ("mpota-cmd/%d\n%s\n%d\n%s\n%s" % (c["v"], c["dev"], c["seq"], c["op"], t)).encode()


def _no(what, detail):
    print("mpota: ignored", what, detail)


def _read(path):
    # The record in path: None if it is missing, torn or damaged.
    try:
        with open(path) as f:
            d = f.read()
        r = json.loads(d[16:])
        if d[:16] == hexlify(sha256(d[16:]).digest()[:8]).decode() and type(r["n"]) is int:
            return r
    except Exception:
        pass
    return None


class Guard:
    # Kept across power cuts, resets, deep sleep: n (records written), seq
    # (highest accepted), ver (last update accepted), keys (moduli; None: CMD_KEYS).

    def __init__(self, dev, keys=(), unsigned=False, pull=None, fw=0):
        self.dev, self.fw, self.unsigned, self.pull = dev, fw, unsigned, pull
        if isinstance(keys, str):
            keys = (keys,)
        self.cfg = keys
        self.n = self.seq = self.done = 0
        self.ver = self.mods = None
        self.slot = 1
        for i in (0, 1):
            r = _read(SLOTS[i])
            if r and r["n"] > self.n:
                self.n, self.seq, self.ver, self.mods, self.slot = r["n"], r["seq"], r["ver"], r["keys"], i
        self._use()

    def _use(self):
        # (kid, modulus hex) of each trusted key, at most 3.
        self.k = []
        for h in self.mods or self.cfg:
            h = h.lower()
            if len(self.k) == 3 or not keyhex(h):
                print("mpota: CMD_KEYS entry %s... skipped (at most 3 moduli in hex)" % h[:12])
            else:
                self.k.append((kid(h), h))
        if not (self.k or self.unsigned):
            print("mpota: no CMD_KEYS, every command will be ignored")

    def kids(self):
        return [i for i, _ in self.k]

    def check(self, m):
        # Rules 1-4 for the payload m: the command to act on, or None (noted).
        try:
            c = json.loads(m)
            ok = isinstance(c, dict) and (_fields(c, self.pull) if "sig" in c else _v1(c))
        except Exception:
            ok = False
        if not ok:
            return _no("malformed cmd", m[:80])
        if "sig" not in c:
            if self.unsigned:
                return c
            return _no("unsigned cmd", "%s (ALLOW_UNSIGNED is off)" % c["job"])
        if c["dev"] != self.dev:
            return _no("cmd for device", c["dev"])
        n = None
        for i, h in self.k:
            if i == c["kid"]:
                n = unhexlify(h)
        if n is None:
            return _no("cmd signed by unknown key", c["kid"])
        s = c["seq"]
        b = _sig(c["sig"], len(n))
        if b is None or not verify(n, message(c), b):
            return _no("cmd with a bad signature, seq", s)
        if s <= self.seq:  # its job over: no note (done: mpota_appget.online; or its fw runs)
            return None if s == self.done or s == self.seq and c.get("fw") == self.fw else _no("replayed cmd, seq", "%d <= %d" % (s, self.seq))
        if s > self.seq + FUTURE:
            return _no("cmd from the future, seq", "%d > %d + %d" % (s, self.seq, FUTURE))
        return c

    def downgrade(self, c):
        # Rule 6: refuses a signed update older than the last one accepted, unless down=1.
        v = self.ver
        if "sig" in c and not c["down"] and v and older(c["ver"], v):
            return "downgrade refused: %s is older than %s (allow the downgrade)" % (c["ver"], v)

    def commit(self, c, ver=None, keys=None):
        # Rule 7: records a signed command in flash before the agent answers
        # or acts on it. False, with a note, if flash fails.
        if "sig" not in c:
            return True
        old = (self.n, self.seq, self.ver, self.mods)
        self.n += 1
        self.seq = c["seq"]
        if ver:
            self.ver = ver
        if keys:
            self.mods = keys
        try:
            self._save()
        except Exception as e:
            self.n, self.seq, self.ver, self.mods = old
            print("mpota: cannot store seq, cmd ignored:", repr(e))
            return False
        if keys:
            self._use()
        return True

    def _save(self):
        # Power-cut safe on FAT and LittleFS: two files, each with a
        # checksum (SHA-256) first; the valid one with the higher n wins.
        # A save writes the file NOT holding the current record: a cut
        # before open() changes nothing; after open() (FAT truncates, LittleFS
        # keeps the old data until close) or while writing, that file is
        # empty, torn or older (ruled out), the other still current; after
        # close() the new one wins. The agent acts only after close(). No
        # rename: VfsFat's rename over a file deletes the target first. Not
        # covered: a cut tearing FAT's own table (LittleFS survives that).
        b = json.dumps({"n": self.n, "seq": self.seq, "ver": self.ver, "keys": self.mods})
        i = 1 - self.slot
        with open(SLOTS[i], "w") as f:
            f.write(hexlify(sha256(b).digest()[:8]).decode() + b)
        self.slot = i
