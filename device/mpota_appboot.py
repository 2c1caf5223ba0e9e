# A boot that only updates the app, for boards short of heap (the ESP8266).
# The agent saved the job, asked for this boot (mpota_loader.BOOT) and
# reset; the loader runs this before the app and the agent start, so the
# update has the heap without them (docs/app-updates.md "Heap"). It
# connects WiFi and MQTT as the agent does, reports on ack as the agent
# would (mpota_appjob), and resets into the new app, or returns: the app
# and the agent then start, and the job stays on flash for the agent to
# try again after its back-off (a sleeper at its next wake).
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
        self.t0 = time.ticks_ms()
        self.at = 0
        self.ad = self.t0
        self.up = False
        self.mq = None

    def _c(self, name, default=None):
        return getattr(self.cfg, name, default)

    def _vbat(self):
        # VBAT_ADC_SCALE only: a vbat function given to the agent in main.py is not known here.
        return round(machine.ADC(0).read() * self.scale, 2) if self.scale else None

    def _pub(self, sub, msg, retain=False):
        self.mq.publish(self.base + sub, msg, retain, 1)

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
        from umqtt.simple import MQTTClient

        c = self._c
        m = self.mq = MQTTClient(self.id, c("MQTT_HOST"), c("MQTT_PORT", 1883), c("MQTT_USER"), c("MQTT_PASSWORD"), c("KEEPALIVE", 60))
        m.set_last_will(self.base + "status", "offline", True, 1)
        m.connect()
        self.up = True


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
        a.mq.disconnect()
    except Exception:
        pass
