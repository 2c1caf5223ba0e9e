# mpota on the ESP32 (contract v3): the firmware identity and slots, and
# op "pull": fetch the image over HTTP into the other app slot, check its
# SHA-256, set_boot(), reset; confirm or report a rollback at the next boot.
# Imported by mpota_agent.py on the ESP32 only. See README.md.
import json
import os
import time

import esp32
import machine
import socket
from binascii import b2a_base64, hexlify
from hashlib import sha256
from mpota_cmd import _read

B = 4096  # the partition's block; writeblocks() takes whole blocks only
EVERY = 16  # blocks between progress reports and saves of got (64 KiB)
TIMEOUT = 20  # s without a byte from the server: the try is over
# machine.reset_cause() 0..5 on the ESP32 as the contract's wake names.
WAKE = ("other", "power", "hard", "wdt", "deepsleep", "soft")
# The two copies of the pull record, written in turn (as mpota_cmd's seq).
RECS = ("/mpota_pull.0", "/mpota_pull.1")
NOSLOT = "no OTA partition: this board has one app slot; reflash it with the OTA variant"
BADSHA = "sha256 mismatch: the image was corrupted on the way; nothing was switched"
LOW = "battery low"


class Refused(Exception):
    # The server will not give this image (HTTP 4xx) or gives another one:
    # trying again cannot help.
    pass


def chip():
    # "Generic ESP32 module with OTA with ESP32S3" -> "esp32s3"
    m = os.uname().machine
    m = m[m.rfind(" ") + 1 :].lower()
    return "".join(ch for ch in m if ch.isalpha() or ch.isdigit())[:16] or "esp32"


def _line(s):
    # One header line, at most 512 bytes: a server cannot make the board
    # buffer more (readline(limit) is not on every socket).
    b = bytearray()
    while len(b) < 512:
        c = s.read(1)
        if not c:
            break
        b += c
        if c == b"\n":
            return bytes(b)
    if b:
        raise OSError("an HTTP header line over 512 bytes")
    return b""


class Pull:
    def __init__(self, agent):
        a = self.a = agent
        P = esp32.Partition
        self.run = P(P.RUNNING)
        b = bytearray(B)
        self.run.readblocks(0, b)
        # app_elf_sha256 of esp_app_desc_t, image offset 0xb0: its first 32 hex.
        a.fw = hexlify(b[0xB0:0xC0]).decode()
        c = machine.reset_cause()
        a.wake = WAKE[c] if 0 <= c < len(WAKE) else "other"
        try:
            self.to = self.run.get_next_update()
            self.slot = self.to.info()[3]
        except OSError:
            self.to = None  # one app slot (factory): no update in place
            self.slot = 0
        self.n = 0
        self.i = 1
        self.r = None
        for i in (0, 1):
            r = _read(RECS[i])
            if r and r["n"] > self.n:
                self.n = r["n"]
                self.i = i
                self.r = r["p"]
        r = self.r
        self.rb = None
        if r and not r.get("sw") and (not self.to or r["to"] != self.to.info()[4]):
            r["got"] = 0  # the slot changed under it (a serial flash): nothing there is ours
        if r and r.get("sw") and r["fw"] != a.fw:
            # set_boot() went through, yet the old firmware runs: the new
            # one never confirmed and the bootloader went back.
            self.rb = {"job": r["job"], "fw": r["fw"]}
        self.ok = False
        self.tries = 0
        self.due = time.ticks_ms()

    # --- called by the agent ---

    def fields(self, c):
        # The v3 fields of op pull (mpota_cmd checks the rest): sha is 64
        # lowercase hex, url ^https?://[^\s,]{1,240}$ (ASCII blanks as \s).
        h = c.get("sha")
        u = c.get("url")
        if not (isinstance(h, str) and len(h) == 64 and isinstance(u, str)):
            return False
        for ch in h:
            if ch not in "0123456789abcdef":
                return False
        u = u.split("://", 1) + [""]
        for ch in u[1]:
            if ch <= " " or ch == ",":
                return False
        return u[0] in ("http", "https") and 0 < len(u[1]) <= 240

    def state(self, s):
        s["v"] = 3
        s["chip"] = chip()
        s["slot"] = self.slot
        s["run"] = self.run.info()[4]
        if self.rb:
            s["rb"] = self.rb

    def online(self):
        # After the state went out: confirm the running firmware; the pull
        # that switched is over (done, or rolled back and now reported).
        r = self.r
        if not self.ok:
            try:
                esp32.Partition.mark_app_valid_cancel_rollback()
            except OSError:
                pass  # a one-app board (-261) or no valid otadata entry (ESP_FAIL)
            self.ok = True
        if r and (r["fw"] == self.a.fw or r.get("sw")):
            self._forget()
            print("mpota: job", r["job"], "rolled back" if self.rb else "done")
        self.rb = None

    def resume(self):
        # A pull left unfinished (the socket broke, a power cut, a sleep)
        # goes on when its back-off has passed.
        r = self.r
        if r and self.to and not r.get("sw") and time.ticks_diff(time.ticks_ms(), self.due) >= 0:
            self._fetch()

    def take(self, c):
        # A signed command that passed rules 1-5.
        a = self.a
        g = a.g
        job = c["job"]
        if c["op"] != "pull":
            err = "this board is an ESP32: it takes op pull (contract v3), not ota"
        else:
            err = g.downgrade(c) or self._refuse(c["size"])
        if not g.commit(c, None if err else c["ver"]):
            return
        r = self.r
        if err:
            if r:
                self._forget()  # an older pull is over: the server has moved on
            return self._ack({"job": job, "ready": False, "error": err})
        to = self.to.info()[4]
        # The same image into the same slot: go on from what is written.
        same = r and not r.get("sw") and (r["fw"], r["sha"], r["size"], r["to"]) == (c["fw"], c["sha"], c["size"], to)
        self.r = {"job": job, "fw": c["fw"], "sha": c["sha"], "size": c["size"], "url": c["url"]}
        self.r["ver"] = c["ver"]
        self.r["to"] = to
        self.r["got"] = r["got"] if same else 0
        try:
            self._save()
        except OSError as e:
            self.r = None
            return self._ack({"job": job, "ready": False, "error": "cannot record the pull on flash: %r" % e})
        self._ack({"job": job, "ready": True, "pull": True})
        a._pub("status", "ota", True)
        self.tries = 0
        self._fetch()

    # --- the pull ---

    def _refuse(self, size):
        if not self.to:
            return NOSLOT
        if self._low():
            return LOW
        if size > self.slot:
            return "no room: size %d > the slot's %d bytes" % (size, self.slot)
        return None

    def _low(self):
        a = self.a
        v = a._vbat()
        return a.vmin and v is not None and v < a.vmin

    def _ack(self, d):
        self.a._pub("ack", json.dumps(d))

    def _fail(self, job, why):
        # Nothing was switched: the record goes, the running firmware stays.
        self._forget()
        self._ack({"job": job, "error": why})
        self.a._pub("status", "online", True)

    def _fetch(self):
        r = self.r
        job = r["job"]
        T = r["size"]
        buf = bytearray(B)
        h = sha256()
        got = r["got"]
        # What is already written counts: rebuilding the hash from flash is
        # far cheaper than fetching it again.
        n = 0
        while n < got:
            self.to.readblocks(n // B, buf)
            k = min(B, got - n)
            h.update(buf if k == B else memoryview(buf)[:k])
            n += k
        try:
            # Also when it resumes (a boot, a wake, a back-off): the battery
            # may have run down since the command was taken.
            if self._low():
                raise OSError(LOW)
            if got < T:
                if got:
                    print("mpota: job", job, "resumes at", got)
                self._ack({"job": job, "got": got, "total": T})
                h, got = self._http(r, h, buf, got)
        except Refused as e:
            return self._fail(job, str(e))
        except (OSError, ValueError, IndexError) as e:
            # The server or the WiFi went away (or answered garbage): keep
            # what is written, try again after 2, 4, 8 .. 60 s (at the next
            # wake on a sleeper).
            try:
                self._save()  # got as written
            except OSError:
                pass
            self.tries += 1
            w = min(60, 1 << self.tries)
            self.due = time.ticks_add(time.ticks_ms(), w * 1000)
            print("mpota: job %s stopped at %d of %d bytes (%r), again in %d s" % (job, r["got"], T, e, w))
            if e.args and e.args[0] == LOW:
                # The server hears why (a try that failed; it asks again later).
                self._ack({"job": job, "error": LOW})
            return
        if hexlify(h.digest()).decode() != r["sha"]:
            return self._fail(job, BADSHA)
        try:
            self.to.set_boot()
        except OSError as e:
            x = e.args
            why = "OSError(%s) %s" % (x[0], x[1] if len(x) > 1 else "")
            return self._fail(job, "set_boot refused the image: " + why.strip())
        r["sw"] = 1
        a = self.a
        try:
            self._save()
            self._ack({"job": job, "got": T, "total": T, "done": True})
            a.mq.disconnect()
        except Exception as e:
            # The switch is made: reset anyway (the next state tells the server).
            print("mpota:", repr(e))
        a.up = False
        # A hard reset: after a deep sleep the bootloader would boot the old slot.
        machine.reset()

    def _http(self, r, h, buf, got):
        # GET url over a plain socket (HTTP/1.1, Basic auth, Range when
        # resuming); the body goes block by block into the slot.
        u = r["url"]
        x = u.split("/", 3)
        hp = x[2]
        path = "/" + (x[3] if len(x) > 3 else "")
        tls = x[0] == "https:"
        host, port = hp, 443 if tls else 80
        if ":" in hp:
            host, port = hp.rsplit(":", 1)
            port = int(port)
        a = self.a
        user = "%s:%s" % (a._c("MQTT_USER") or "", a._c("MQTT_PASSWORD") or "")
        q = "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n" % (
            path,
            hp,
            b2a_base64(user.encode())[:-1].decode(),
        )
        if got:
            q += "Range: bytes=%d-\r\n" % got
        s = socket.socket()
        try:
            s.settimeout(TIMEOUT)
            s.connect(socket.getaddrinfo(host, port)[0][-1])
            if tls:
                # No certificate check: the image is checked by its signed SHA-256.
                import ssl

                s = ssl.wrap_socket(s, server_hostname=host)
            s.write((q + "Connection: close\r\n\r\n").encode())
            h, got = self._body(s, r, h, buf, got)
        finally:
            s.close()
        return h, got

    def _body(self, s, r, h, buf, got):
        T = r["size"]
        st = _line(s).split(None, 2)
        code = int(st[1]) if len(st) > 1 and st[1].isdigit() else 0
        n = cr = None
        for i in range(41):
            line = _line(s)
            if not line or line == b"\r\n":
                break
            if i == 40:
                raise OSError("more than 40 HTTP header lines")
            k, _, v = line.decode().partition(":")
            k = k.strip().lower()
            if k == "content-length":
                n = int(v)
            elif k == "content-range":
                cr = v.strip()
        if code in (401, 403, 404, 410):
            raise Refused("the server refused the download: HTTP %d %s" % (code, st[-1].decode().strip()))
        if code == 200 and got:
            got = 0  # no Range support: the whole image again
            h = sha256()
        elif code == 206 and cr != "bytes %d-%d/%d" % (got, T - 1, T):
            raise Refused("the server sent bytes %s, not %d-%d/%d" % (cr, got, T - 1, T))
        elif code not in (200, 206):
            raise OSError("HTTP %d" % code)  # busy or broken: try again later
        if n is None:
            raise Refused("the server sent no Content-Length")
        if n != T - got:
            raise Refused("the server sends %d bytes, the command says %d" % (n, T - got))
        mv = memoryview(buf)
        blk = got // B
        k = 0
        while got + k < T:
            m = s.readinto(mv[k : min(B, k + T - got)])
            if not m:
                raise OSError("the server closed at byte %d of %d" % (got + k, T))
            h.update(mv[k : k + m])
            k += m
            if k == B or got + k == T:
                for i in range(k, B):
                    buf[i] = 0xFF  # the last block padded, as erased flash
                self.to.writeblocks(blk, buf)
                blk += 1
                got += k
                k = 0
                r["got"] = got
                if blk % EVERY == 0 and got < T:
                    self._save()
                    self._ack({"job": r["job"], "got": got, "total": T})
                    if self._low():
                        raise OSError(LOW)
        return h, got

    # --- the record on flash ---

    def _save(self):
        # As mpota_cmd's seq record: the file not holding the current record
        # is written, so a power cut leaves the old record or the new one.
        self.n += 1
        b = json.dumps({"n": self.n, "p": self.r})
        i = 1 - self.i
        with open(RECS[i], "w") as f:
            f.write(hexlify(sha256(b).digest()[:8]).decode() + b)
        self.i = i

    def _forget(self):
        # The older copy first: a cut between leaves the newer one, never an older.
        self.r = None
        for i in (1 - self.i, self.i):
            try:
                os.remove(RECS[i])
            except OSError:
                pass
