/**
 * Python sides of the simulated ESP8266 modules. The JS module `_mpota_host`
 * (registered by the worker) only returns values; these thin modules turn
 * its status values into the exceptions the real C modules raise, because an
 * exception thrown from JS would bypass Python's try/except.
 *
 * Conventions of `_mpota_host`: byte strings are hex; a data call returns an
 * int where the real call raises OSError(that int); `sock_write` returns
 * -errno on failure.
 */

import { machineSource } from "./python-machine-fake.ts";

const machine = machineSource({
  constants: `PWRON_RESET = 0
WDT_RESET = 1
SOFT_RESET = 4
DEEPSLEEP_RESET = 5
HARD_RESET = 6
DEEPSLEEP = 4`,
  rtcMax: 492,
  freq: 80000000,
  pinConstants: `    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1`,
  extra: `

class ADC:
    def __init__(self, id):
        if id not in (0, 1):
            raise ValueError("invalid ADC")
        self._id = id

    def read(self):
        return _h.adc(self._id)

    def read_u16(self):
        return self.read() * 64
`,
});

const esp = `import _mpota_host as _h
from binascii import unhexlify


def flash_read(offset, n_or_buf):
    n = n_or_buf if isinstance(n_or_buf, int) else len(n_or_buf)
    r = _h.flash_read(offset, n)
    if isinstance(r, int):
        raise OSError(r)
    data = unhexlify(r)
    if isinstance(n_or_buf, int):
        return data
    n_or_buf[:] = data


def flash_size():
    return _h.flash_size()


def flash_user_start():
    return _h.flash_user_start()


def osdebug(level):
    pass
`;

const network = `import _mpota_host as _h
from binascii import unhexlify

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = 2
STAT_NO_AP_FOUND = 3
STAT_CONNECT_FAIL = 4
STAT_GOT_IP = 5


class WLAN:
    def __init__(self, interface=STA_IF):
        self._if = interface

    def active(self, on=None):
        if on is None:
            return self._if == STA_IF

    def connect(self, ssid=None, key=None, bssid=None):
        pass

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
            return STAT_GOT_IP if self.isconnected() else STAT_CONNECTING
        if param == "rssi":
            return _h.wlan_rssi()
        raise ValueError("unknown status param")

    def config(self, *args, **kwargs):
        if args == ("mac",):
            u = unhexlify(_h.unique_id())
            # The ESP32's unique_id() is its MAC; the ESP8266's is the chip id.
            return u if len(u) == 6 else b"\\x5c\\xcf\\x7f" + u[1:4]
        if args == ("essid",):
            return "mpota-sim"
`;

const socket = `import _mpota_host as _h
from binascii import hexlify, unhexlify
from io import IOBase

AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_IP = 0
IPPROTO_TCP = 6
SOL_SOCKET = 1
SO_REUSEADDR = 4


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    r = _h.resolve(str(host))
    if isinstance(r, int):
        raise OSError(r)
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (r, port))]


# A stream (IOBase) so that the port's own select.poll works on it.
class socket(IOBase):
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if type != SOCK_STREAM:
            raise OSError(95)  # the simulated device has TCP only
        self._id = _h.sock_new()
        self._t = -1  # ms; -1 blocking, 0 non-blocking
        self._w = 0  # ms the host may wait in the next poll question

    def ioctl(self, req, arg):
        # select.poll asks (MP_STREAM_POLL, 3) which events of arg are ready,
        # again and again until one is or its time is out: the port spins. The
        # first ask is answered at once; after it the host waits up to 20 ms
        # for a change, so a waiting poll does not spin the bridge.
        if req != 3:
            return -22  # EINVAL, as modlwip answers what it does not do
        w = self._w
        self._w = 20
        return _h.sock_poll(self._id, arg, w)

    def settimeout(self, t):
        self._t = -1 if t is None else int(t * 1000)

    def setblocking(self, flag):
        self._t = -1 if flag else 0

    def setsockopt(self, level, opt, value):
        pass

    def connect(self, addr):
        e = _h.sock_connect(self._id, addr[0], addr[1], self._t)
        if e:
            raise OSError(e)

    def write(self, buf, a=None, b=None):
        self._w = 0
        if isinstance(buf, str):
            buf = buf.encode()
        if b is not None:
            buf = buf[a : a + b]
        elif a is not None:
            buf = buf[:a]
        n = _h.sock_write(self._id, hexlify(bytes(buf)).decode())
        if n < 0:
            raise OSError(-n)
        return n

    def send(self, buf):
        return self.write(buf)

    def sendall(self, buf):
        self.write(buf)

    def _get(self, n, once):
        self._w = 0
        r = _h.sock_read(self._id, n, self._t, once)
        if isinstance(r, int):
            raise OSError(r)
        return None if r is None else unhexlify(r)

    def read(self, n=-1):
        return self._get(n, False)

    def recv(self, n):
        r = self._get(n, True)
        if r is None:
            raise OSError(11)
        return r

    def readinto(self, buf, n=None):
        r = self._get(len(buf) if n is None else n, False)
        if r is None:
            return None
        buf[: len(r)] = r
        return len(r)

    def readline(self):
        line = b""
        while not line.endswith(b"\\n"):
            c = self.read(1)
            if not c:
                break
            line += c
        return line

    def makefile(self, *args, **kwargs):
        return self

    def close(self):
        _h.sock_close(self._id)
`;

/**
 * `sys` as the board's build has it: `sys.platform` and
 * `sys.implementation._mpy` (v1.27: .mpy version 6, sub-version 3, the native
 * architecture in bits 10-13), over the wasm port's sys, whose attributes are
 * read-only. The prelude imports it, so it stands in sys.modules for "sys".
 */
export function sysSource(platform: string, mpy: number): string {
  return `import sys as _s

platform = ${JSON.stringify(platform)}


class _Implementation:
    _mpy = ${mpy}

    def __getattr__(self, name):
        return getattr(_s.implementation, name)


implementation = _Implementation()


def __getattr__(name):
    return getattr(_s, name)


_s.modules["sys"] = _s.modules["usys"] = _s.modules["_mpota_sys"]
`;
}

/** sys.implementation._mpy of MicroPython 1.27: the ESP8266 (xtensa), the ESP32 (xtensawin), the Pico W (armv6m). */
export const BOARD_MPY = { esp8266: 0x2706, esp32: 0x2b06, rp2: 0x1306 } as const;

/** /lib modules written into every simulated device. */
export const HOST_MODULES: Record<string, string> = {
  "lib/_mpota_sys.py": sysSource("esp8266", BOARD_MPY.esp8266),
  "lib/machine.py": machine,
  "lib/esp.py": esp,
  "lib/network.py": network,
  "lib/socket.py": socket,
};

/** The fields of `os.uname()` that differ between ports and boards. */
export interface UnameFields {
  sysname: string;
  nodename: string;
  machine: string;
}

const ESP8266_UNAME: UnameFields = {
  sysname: "esp8266",
  nodename: "esp8266",
  machine: "ESP module with ESP8266",
};

/**
 * Runs before boot.py: gives the wasm port the `os.uname()` of the board's
 * build, imports the fake C modules (built in on the chip, so they stay in
 * sys.modules and never show in the filesystem), and replaces the wasm
 * port's in-memory filesystem at "/" with the device's own.
 */
export function preludeSource(
  version: string,
  uname: UnameFields = ESP8266_UNAME,
  modules = "_mpota_sys, machine, esp, network, socket",
): string {
  const release = /^v?(\d+\.\d+\.\d+)/.exec(version)?.[1] ?? "1.27.0";
  return `import os
class _Uname:
    sysname = ${JSON.stringify(uname.sysname)}
    nodename = ${JSON.stringify(uname.nodename)}
    release = ${JSON.stringify(release)}
    version = ${JSON.stringify(version)}
    machine = ${JSON.stringify(uname.machine)}
os.uname = lambda: _Uname
import ${modules}, vfs, _mpota_fs
vfs.umount("/")
vfs.mount(_mpota_fs.HostFS(), "/")
os.chdir("/")
del ${modules}, vfs, _mpota_fs
`;
}

/** Runs one startup script the way the ESP8266 port does, with tracebacks naming the file. */
export function runScriptSource(name: string): string {
  return `exec(compile(open(${JSON.stringify(name)}).read(), ${JSON.stringify(name)}, "exec"))`;
}
