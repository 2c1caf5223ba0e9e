# A boot that only updates the app, for boards short of heap (the ESP8266).
# The agent saved the job, asked for this boot (mpota_loader.BOOT) and
# reset; the loader runs this before the app and the agent start, so the
# update has the heap without them (docs/app-updates.md "Heap"). It
# connects WiFi and MQTT as the agent does (publishing only), reports on
# ack as the agent would (mpota_appjob), and resets into the new app, or
# returns: the app and the agent then start, and the job stays on flash for
# the agent to try again after its back-off (a sleeper at its next wake).
import time
from binascii import hexlify

import machine
import mpota_appjob as J
import network


class Lean:
    # What mpota_appjob needs of the agent, and no more.
    def __init__(self, cfg):
        self.cfg = cfg
        c = self._c
        self.id = c("DEVICE_ID") or hexlify(machine.unique_id()).decode()
        self.base = "%s/%s/" % (c("BASE_TOPIC", "mpota"), self.id)
        self.sleep_s = c("SLEEP", 0)
        self.vmin = c("MIN_VBAT", 0)
        self.scale = c("VBAT_ADC_SCALE")
        self.ka = c("KEEPALIVE", 60)
        self.t0 = time.ticks_ms()
        self.at = 0
        self.ad = self.t0
        self.up = False
        self.mq = self  # for mpota_appjob: a.mq.disconnect()

    def _c(self, name, default=None):
        return getattr(self.cfg, name, default)

    def _vbat(self):
        # As the agent reads it, by VBAT_ADC_SCALE only (a vbat function given
        # to the agent in main.py is not known here): ADC(0).read() on an ESP;
        # rp2 has no esp module nor ADC.read(), and VSYS takes mpota_rp2.read().
        # A reading that fails leaves the battery unknown, as in the agent,
        # rather than stopping every try of the job.
        if self.scale:
            try:
                try:
                    import esp

                    a = machine.ADC(0)
                except ImportError:
                    import mpota_rp2 as a
                return round(a.read() * self.scale, 2)
            except Exception as e:
                print("mpota: vbat:", repr(e))
        return None

    def connect(self):
        w = network.WLAN(network.STA_IF)
        if not w.isconnected():
            ssid = self._c("WIFI_SSID")
            if ssid:
                w.active(True)
                w.connect(ssid, self._c("WIFI_PASSWORD"))
            t = time.ticks_ms()
            while not w.isconnected():
                if time.ticks_diff(time.ticks_ms(), t) > self._c("WIFI_TIMEOUT_MS", 15000):
                    raise OSError("no WiFi")
                time.sleep_ms(100)
        import socket

        c = self._c
        u = c("MQTT_USER")
        s = self.s = socket.socket()
        # A broker that takes the connection and never answers (hung, or its
        # host gone with the connection half open) ends the try after a
        # keep-alive, instead of holding the boot, and the app, for good.
        s.settimeout(self.ka or 60)
        s.connect(socket.getaddrinfo(c("MQTT_HOST"), c("MQTT_PORT", 1883))[0][-1])
        # CONNECT (MQTT 3.1.1), as umqtt.simple sends it for the agent: a clean
        # session, the will (status "offline", retained, QoS 1), user and
        # password when a user is set.
        ka = self.ka
        b = b"\0\4MQTT\4" + bytes((0x2E | (0xC0 if u else 0), ka >> 8, ka & 255)) + _s(self.id)
        b += _s(self.base + "status") + _s("offline")
        if u:
            b += _s(u) + _s(c("MQTT_PASSWORD") or "")
        r = self._send(0x10, b)
        if r[3]:
            raise OSError("the broker refused the update boot's connection: %r" % r)
        self.up = True

    # umqtt.simple would cost 5.6 KB of heap as .py (the 1 MiB and OTA
    # builds do not freeze it); the update boot needs only CONNECT, PUBLISH
    # at QoS 1, PINGREQ and DISCONNECT. mpota_appjob calls a.mq.disconnect()
    # and a.mq.ping() (J._alive), and keeps a._ping.

    def _send(self, h, b, n=4):
        # A packet, then its answer: CONNACK, PUBACK, PINGRESP (n=2), each
        # h's type + 1. The broker answers at once and sends nothing unasked
        # (no subscription), so the next bytes are the answer.
        k = len(b)
        x = bytearray((h,))
        while True:
            x.append(k & 0x7F | (0x80 if k > 127 else 0))
            k >>= 7
            if not k:
                break
        s = self.s
        s.write(x)
        s.write(b)
        self._ping = time.ticks_ms()  # any packet keeps the connection alive: J._alive pings after none
        r = s.read(n)
        if not r or r[0] != (h & 0xF0) + 16:
            raise OSError("the broker answered %r" % r)
        return r

    def _pub(self, sub, msg, retain=False):
        # Packet id 1 each time: one PUBLISH is in flight at a time.
        self._send(0x32 | (1 if retain else 0), _s(self.base + sub) + b"\0\1" + msg.encode())

    def ping(self):
        self._send(0xC0, b"", 2)

    def disconnect(self):
        try:
            self.s.write(b"\xe0\0")
        finally:
            self.s.close()
            self.up = False


def _s(t):
    # An MQTT string: its length in two bytes, then its UTF-8.
    t = t.encode()
    return bytes((len(t) >> 8, len(t) & 255)) + t


def run():
    import mpota_config

    a = Lean(mpota_config)
    J.load(a)
    j = a.aj
    if not j or j.get("end"):
        return
    a.at = j.get("t", 0)
    print("mpota: update boot for job", j["job"])
    try:
        a.connect()
    except OSError as e:
        j["t"] = a.at + 1
        J._save(a)
        print("mpota: update boot:", repr(e))
        return
    J.run(a)  # resets after the switch
    if a.aj:
        # Stopped (a broken link, the end of a wake): the agent waits its back-off.
        j["t"] = a.at
        J._save(a)
    try:
        a.disconnect()
    except Exception:
        pass
