# mpota's device agent, MQTT contract v2 (v3: mpota_pull, mpota_appget).
# What it needs: README.md.
import gc
import json
import os
import select
import sys
import time

import machine
import network
from binascii import hexlify
from mpota_cmd import Guard
from umqtt.simple import MQTTClient

try:
    import esp
except ImportError:
    esp = None  # rp2 (mpota_rp2)
try:
    import ota  # yaota8266's entry: the ESP8266's only
except ImportError:
    pass

# machine.deepsleep() holds microseconds in a u32: about 71.5 min.
MAX_SLEEP = 4294
# machine.reset_cause() 0..6 as the contract's wake names.
WAKE = ("power", "wdt", "other", "wdt", "soft", "deepsleep", "hard")


def firmware_id(offset=0x3C000):
    # The image's MD5 trailer as yaota8266 checks it: a u32 size at
    # offset+0x8ffc, 16 bytes at offset+size. None: no plausible image.
    try:
        size = int.from_bytes(esp.flash_read(offset + 0x8FFC, 4), "little")
        if size <= 0x9000 or size > 800000:
            return None
        at = offset + size
        raw = esp.flash_read(at & ~3, 20)  # aligned read
    except OSError:
        return None
    return hexlify(raw[at & 3 : (at & 3) + 16]).decode()


class Agent:
    def __init__(self, config=None, vbat=None):
        if config is None:
            import mpota_config as config
        self.cfg = config
        c = self._c
        self.id = c("DEVICE_ID") or hexlify(machine.unique_id()).decode()
        self.base = "%s/%s/" % (c("BASE_TOPIC", "mpota"), self.id)
        s = c("SLEEP", 0)
        if s > MAX_SLEEP:
            print("mpota: SLEEP %d s is above the deep-sleep limit, using %d s" % (s, MAX_SLEEP))
            s = MAX_SLEEP
        self.sleep_s = s
        self.app = c("MAIN_APP_OFFSET", 0x3C000)
        self.vmin = c("MIN_VBAT", 0)
        self.ka = c("KEEPALIVE", 60)
        scale = c("VBAT_ADC_SCALE")
        if vbat is None and scale:
            adc = machine.ADC(0) if esp else __import__("mpota_rp2")  # rp2: VSYS

            def vbat():
                return adc.read() * scale

        self.vbat = vbat
        self.t0 = time.ticks_ms()  # a sleeper's app job stops APP_WAKE_MS after
        self.ap = self.aj = None
        self.aok = False
        try:
            import mpota_loader  # main.py ran it already

            self._apps("boot")
        except ImportError:
            pass
        p = self.p = None
        if os.uname().sysname == "esp32":  # sys.platform, as fakes can set it
            from mpota_pull import Pull  # never loaded on the ESP8266

            p = self.p = Pull(self)  # sets fw and wake
        elif not esp:
            from mpota_rp2 import ident

            self.fw, self.wake = ident()
        else:
            self.fw = firmware_id(self.app)
            if self.fw is None:
                print("mpota: no image at MAIN_APP_OFFSET 0x%x" % self.app)
                self.fw = "0" * 32
            cause = machine.reset_cause()
            self.wake = WAKE[cause] if 0 <= cause < len(WAKE) else "other"
        self.g = Guard(self.id, c("CMD_KEYS", ()), c("ALLOW_UNSIGNED", False), self._v3, self.fw)
        self.wlan = network.WLAN(network.STA_IF)
        self.ip = None
        self.mq = MQTTClient(self.id, c("MQTT_HOST"), c("MQTT_PORT", 1883), c("MQTT_USER"), c("MQTT_PASSWORD"), self.ka)
        self.mq.set_callback(self._on)
        self.mq.set_last_will(self.base + "status", "offline", True, 1)
        self.up = False
        self.cmd = None
        self._ping = self._retry = time.ticks_ms()

    def _c(self, name, default=None):
        return getattr(self.cfg, name, default)

    def checkin(self):
        # Reports state and status=online, waits CMD_WAIT_MS for a retained
        # command (an update resets). True if online, else False (printed).
        try:
            self._online()
            self._wait(self._c("CMD_WAIT_MS", 500))
            self._act()
        except Exception as e:
            self._drop("offline:", e)
        return self.up

    def publish(self, sub, value, retain=False, qos=0):
        # Publishes to <base>/<id>/<sub>; numbers, lists and dicts as JSON.
        if not self.up:
            return False
        if not isinstance(value, (str, bytes)):
            value = json.dumps(value)
        try:
            self._pub(sub, value, retain, qos)
            return True
        except Exception as e:
            self._drop("publish failed:", e)
            return False

    def sleep(self, seconds=None):
        # Publishes status=sleeping, disconnects and deep-sleeps; the device
        # wakes with a full boot (GPIO16 must be wired to RST).
        s = self.sleep_s if seconds is None else min(seconds, MAX_SLEEP)
        if s <= 0:
            print("mpota: no SLEEP set, sleeping %d s" % MAX_SLEEP)
            s = MAX_SLEEP
        if self.up:
            try:
                self._pub("status", "sleeping", True)
                self.mq.disconnect()
            except Exception as e:
                print("mpota:", repr(e))
            self.up = False
        machine.deepsleep(int(s * 1000))

    def poll(self, ms=0):
        # An always-on loop's step: (re)connects, pings, acts on commands; waits
        # up to ms for one. False while offline (retried every RETRY_MS).
        try:
            if not self.up:
                if time.ticks_diff(time.ticks_ms(), self._retry) < 0:
                    return False
                self._online()
            self._wait(ms)
            if self.ka and time.ticks_diff(time.ticks_ms(), self._ping) >= self.ka * 500:
                # 2 pings unanswered: 1.5 x KEEPALIVE silent (MQTT's rule)
                if self._n > 1:
                    raise OSError("no ping answer")
                self.mq.ping()
                self._n += 1
                self._ping = time.ticks_ms()
            self._act()
            return True
        except Exception as e:
            self._drop("connection lost:", e)
            self._retry = time.ticks_add(time.ticks_ms(), self._c("RETRY_MS", 5000))
            return False

    def loop_forever(self):
        while True:
            if not self.poll(1000):
                time.sleep_ms(100)

    def _pub(self, sub, msg, retain=False, qos=1):
        # frozen umqtt.simple: no PUBACK timeout
        self.mq.sock.settimeout(self.ka or 60)
        self.mq.publish(self.base + sub, msg, retain, qos)
        if qos:  # acked: the broker is there (it may have read a PINGRESP)
            self._n = 0

    def _online(self):
        w = self.wlan
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
        self.ip = w.ifconfig()[0]
        try:  # a broker that never answers (hung, host gone): ETIMEDOUT
            self.mq.connect(True, self.ka or 60)
        except TypeError:  # umqtt.simple frozen before v1.25: no timeout
            self.mq.connect()
        self.up = True
        self._n = 0
        self._ping = time.ticks_ms()
        self.mq.subscribe(self.base + "cmd", 1)
        self._pub("state", self._state(), True)
        if self.ap is not None and not self.aok:
            self._apps("online")  # the state is out: confirm the app
        self._pub("status", "online", True)
        if self.p:
            self.p.online()

    def _state(self):
        gc.collect()
        g = self.g
        s = {"v": 2, "fw": self.fw, "ip": self.ip, "wake": self.wake, "sleep": self.sleep_s, "seq": g.seq, "keys": g.kids()}
        if esp:
            s["flash"] = esp.flash_size()
        s["mem"] = gc.mem_free()
        try:
            s["ver"] = os.uname().version
            s["rssi"] = self.wlan.status("rssi")
        except Exception:
            pass
        v = self._vbat()
        if v is not None:
            s["vbat"] = v
        if self.p:
            self.p.state(s)
        if self.ap is not None:
            s["v"] = 3
            s["app"] = self.ap
            if not self.p:
                s["chip"] = sys.platform
        return json.dumps(s)

    def _vbat(self):
        if self.vbat:
            try:
                return round(self.vbat(), 2)
            except Exception as e:
                print("mpota: vbat:", repr(e))
        return None

    def _on(self, topic, msg):
        self.cmd = msg

    def _wait(self, ms):
        # Reads what comes within ms, up to a command. wait_msg() tells no
        # PINGRESP from nothing: a byte to read is the broker's sign of life.
        p = select.poll()
        p.register(self.mq.sock, 1)  # POLLIN
        end = time.ticks_add(time.ticks_ms(), ms)
        while self.cmd is None and p.poll(max(0, time.ticks_diff(end, time.ticks_ms()))):
            self._n = 0
            self.mq.check_msg()

    def _act(self):
        m = self.cmd
        self.cmd = None
        p = self.p
        if not m:
            # none, or the server cleared it (empty retained payload)
            return self._resume()
        g = self.g
        c = g.check(m)  # None: ignored
        if c is None:
            return self._resume()
        if c["op"] == "app":
            return self._apps("take", c)
        if c["op"] == "keys":
            if g.commit(c, keys=c["keys"]):
                self._pub("state", self._state(), True)
            return
        job = c["job"]
        if c["fw"].lower() == self.fw:
            g.commit(c)
            print("mpota: cmd", job, "is for the running firmware, ignored")
            return
        if p:
            return p.take(c)
        if esp:
            err = g.downgrade(c) or self._refuse(c.get("size", 0))
        else:
            from mpota_rp2 import REFUSE as err
        if not g.commit(c, None if err else c.get("ver")):
            return
        if err:
            self._pub("ack", json.dumps({"job": job, "ready": False, "error": err}))
            return
        self._pub("ack", json.dumps({"job": job, "ready": True, "ip": self.ip, "port": 8266}))
        self._pub("status", "ota", True)
        self.mq.disconnect()
        self.up = False
        gc.collect()
        ota.start()

    def _v3(self, c):
        # The fields of op pull (the ESP32's) or app (with the app loader).
        if c["op"] == "pull":
            return self.p.fields(c) if self.p else not esp  # rp2: to refuse
        return c["op"] == "app" and self.ap is not None and self._apps("fields", c)

    def _resume(self):
        # An unfinished fetch (cut link, power, wake's end) goes on after back-off.
        if self.p:
            self.p.resume()
        j = self.aj
        if j and not j.get("end") and time.ticks_diff(time.ticks_ms(), self.ad) >= 0:
            self._apps("run")

    def _apps(self, f, *args):
        # In mpota_appget, loaded for it and dropped after: the heap
        # carries the updater only while it runs.
        import mpota_appget

        try:
            return getattr(mpota_appget, f)(self, *args)
        finally:
            del mpota_appget
            for m in ("mpota_appget", "mpota_appjob", "mpota_stage", "mpota_app", "mpota_http"):
                sys.modules.pop(m, None)
            gc.collect()

    def _refuse(self, size):
        v = self._vbat()
        if self.vmin and v is not None and v < self.vmin:
            return "battery low"
        try:
            room = esp.flash_user_start() - self.app
        except AttributeError:
            room = 800000
        if size > room:
            return "no room: %d > %d bytes" % (size, room)
        return None

    def _drop(self, what, e):
        print("mpota:", what, repr(e))
        self.up = False
        try:
            self.mq.sock.close()
        except Exception:
            pass
