/**
 * Python sides of a simulated Raspberry Pi Pico W's modules (MicroPython's
 * ports/rp2: modmachine.c, machine_pin.h, machine_rtc.c, mpconfigport.h;
 * extmod/network_cyw43.c and modnetwork.c for the CYW43 WiFi), with the
 * conventions of python-fakes.ts. The rp2 port has no `esp` module, so the
 * agent finds none; `socket` is the ESP8266's (lwIP on both).
 */
import { BOARD_MPY, HOST_MODULES, sysSource, type UnameFields } from "./python-fakes.ts";
import { machineSource } from "./python-machine-fake.ts";

// modmachine.c: reset_cause() is WDT_RESET (3) after any watchdog reboot, which is
// also how machine.reset() and the end of deepsleep() (a lightsleep, then a reset)
// restart the chip; PWRON_RESET (1) otherwise. No RTC memory: machine_rtc.c keeps the time only.
const machine = machineSource({
  constants: `PWRON_RESET = 1
WDT_RESET = 3`,
  rtcMax: null,
  freq: 125000000,
  pinConstants: `    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2`,
  extra: `

# GPIO25 and GPIO29 are the CYW43's SPI select and clock on a Pico W
# (pico-sdk cyw43_bus_pio_spi.c): 25 an output, high while the bus is idle;
# 29 on the PIO, pulled down, where the driver puts it back as each
# transfer starts (_spi). 29 reaches VSYS (a 200k/100k divider) only while
# 25 is high (a FET gated by it).
_io = {25: 1, 29: "pio"}


def _spi():
    _io[29] = "pio"


class Pin(Pin):
    def __init__(self, id, mode=-1, pull=-1, value=None):
        super().__init__(id, mode, pull, value)
        if id == 29:
            _io[29] = "pd" if pull == Pin.PULL_DOWN else "in"
        if id == 25 and value is not None:
            _io[25] = self._v

    def value(self, v=None):
        r = super().value(v)
        if self._id == 25 and v is not None:
            _io[25] = self._v
        return r

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    # machine_adc.c: ADC(0..4) takes a channel and leaves its pin as it is;
    # ADC(26..29) or ADC(Pin) runs adc_gpio_init on the pin (function NULL,
    # no pulls). read_u16: the 12-bit sample scaled to 16 bits.
    CORE_TEMP = 4

    def __init__(self, id):
        if isinstance(id, int) and 0 <= id <= 4:
            self._ch = id
            return
        g = id._id if isinstance(id, Pin) else id
        if not isinstance(g, int) or not 26 <= g <= 29:
            raise ValueError("Pin doesn't have ADC capabilities")
        if g == 29:
            _io[29] = "adc"
        self._ch = g - 26

    def read_u16(self):
        # Only channel 3 has something wired (VSYS/3, the host's battery in mV);
        # 4 is the sensor at 27 C (0.706 V). A pull-down beside the divider's
        # 100k (the PIO's state) reads about VSYS/7; select low, nothing.
        mv = 706
        if self._ch != 4:
            mv = 0
            if self._ch == 3 and _io[25]:
                mv = _h.adc(2) // (7 if _io[29] in ("pio", "pd") else 3)
        raw = min(4095, mv * 4095 // 3300)
        return raw << 4 | raw >> 8
`,
});

// network_cyw43.c: status() is the lwIP link status (cyw43's CYW43_LINK_* values, which
// modnetwork.c gives the STAT_ names); isconnected() is link status UP.
const network = `import _mpota_host as _h
import machine

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = -3
STAT_NO_AP_FOUND = -2
STAT_CONNECT_FAIL = -1
STAT_GOT_IP = 3


class WLAN:
    IF_STA = 0
    IF_AP = 1

    def __init__(self, interface=STA_IF):
        self._if = interface
        self._on = False

    def active(self, on=None):
        if on is None:
            return self._on
        machine._spi()
        self._on = bool(on)

    def connect(self, ssid=None, key=None, bssid=None):
        machine._spi()
        self._on = True

    def disconnect(self):
        pass

    def isconnected(self):
        return self._if == STA_IF and _h.wlan_connected()

    def ifconfig(self, config=None):
        if config is None:
            if not self.isconnected():
                return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
            return tuple(_h.wlan_ifconfig().split(","))

    def status(self, param=None):
        if param is None:
            if self.isconnected():
                return STAT_GOT_IP
            return STAT_CONNECTING if self._on else STAT_IDLE
        if param == "rssi":
            machine._spi()  # an ioctl to the chip
            return _h.wlan_rssi()
        raise ValueError("unknown status param")

    def config(self, *args, **kwargs):
        if args == ("essid",) or args == ("ssid",):
            return "mpota-sim"
`;

/** /lib modules written into every simulated Pico W: no `esp`, no `esp32`. */
export const RP2_HOST_MODULES: Record<string, string> = {
  "lib/machine.py": machine,
  "lib/_mpota_sys.py": sysSource("rp2", BOARD_MPY.rp2),
  "lib/network.py": network,
  "lib/socket.py": HOST_MODULES["lib/socket.py"] as string,
};

/** MICROPY_HW_BOARD_NAME of ports/rp2/boards/RPI_PICO_W. */
export const PICO_W_BOARD_NAME = "Raspberry Pi Pico W";

/** os.uname() of an rp2 build (extmod/modos.c: sysname and nodename are sys.platform; machine "<board> with <MCU>"). */
export function rp2Uname(boardName: string = PICO_W_BOARD_NAME, mcu = "RP2040"): UnameFields {
  return { sysname: "rp2", nodename: "rp2", machine: `${boardName} with ${mcu}` };
}

/** MICROPY_HW_FLASH_STORAGE_BYTES of RPI_PICO_W: its LittleFS filesystem (848 KiB). */
export const PICO_W_FS_BYTES = 848 * 1024;
