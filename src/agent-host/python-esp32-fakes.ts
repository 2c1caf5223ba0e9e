/**
 * Python sides of the simulated ESP32's modules (MicroPython v1.27's
 * ports/esp32: modmachine.c, machine_rtc.c, modesp.c, esp32_partition.c),
 * with the same conventions as python-fakes.ts: `_mpota_host` returns
 * values (an esp_err_t where ESP-IDF returns one) and these modules raise
 * what the C code raises. `network` and `socket` are the ESP8266's.
 */
import { ESP_ERR_NAMES } from "../firmware/esp-err.ts";
import { BOARD_MPY, HOST_MODULES, sysSource } from "./python-fakes.ts";
import { machineSource } from "./python-machine-fake.ts";

const machine = machineSource({
  constants: `PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5`,
  rtcMax: 2048,
  freq: 160000000,
  pinConstants: `    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1`,
  extra: `

def soft_reset():
    raise SystemExit


class ADC:
    # The battery voltage straight on the pin (the host reports millivolts).
    ATTN_0DB = 0
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self._pin = pin

    def read_uv(self):
        return _h.adc(2) * 1000

    def read_u16(self):
        return min(65535, _h.adc(2) * 65535 // 3300)

    def read(self):
        return self.read_u16() >> 4
`,
});

const esp = `import _mpota_host as _h
from binascii import unhexlify


def flash_read(offset, buf):
    r = _h.flash_read(offset, len(buf))
    if isinstance(r, int):
        raise OSError(5)
    buf[0 : len(buf)] = unhexlify(r)


def flash_size():
    return _h.flash_size()


def flash_user_start():
    return 0x200000


def osdebug(uart, level=None):
    pass
`;

const esp32 = `import json
import _mpota_host as _h
from binascii import hexlify, unhexlify

_NAMES = ${JSON.stringify(ESP_ERR_NAMES)}
_table = None


def _chk(e):
    # check_esp_err: OSError(-code, esp_err_to_name(code)).
    if e:
        raise OSError(-e, _NAMES.get(str(e), "UNKNOWN ERROR"))


def _parts():
    global _table
    if _table is None:
        _table = json.loads(_h.esp32_table())
    return _table


def _entry(label):
    for p in _parts():
        if p[0] == label:
            return p


def _new(entry, block_size):
    if entry is None:
        raise OSError(2)  # MP_ENOENT
    p = object.__new__(Partition)
    p._p = entry
    p._bs = block_size
    return p


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if isinstance(id, int):
            if id == 0:
                label = _h.esp32_boot()
            elif id == 1:
                label = _h.esp32_running()
            else:
                raise ValueError
            e = _entry(label) if label else None
        else:
            if not isinstance(id, str):
                raise TypeError("can't convert %s to str" % type(id).__name__)
            # The app partitions first, then the data ones.
            e = None
            for t in (0, 1):
                for p in _parts():
                    if e is None and p[1] == t and p[0] == id:
                        e = p
        if e is None:
            raise OSError(2)
        self._p = e
        self._bs = block_size

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=4096):
        return [
            _new(p, block_size)
            for p in _parts()
            if (type == 0xFF or p[1] == type)
            and (subtype == 0xFF or p[2] == subtype)
            and (label is None or p[0] == label)
        ]

    def info(self):
        p = self._p
        return (p[1], p[2], p[3], p[4], p[0], bool(p[5]))

    def __repr__(self):
        p = self._p
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=%u>" % (
            p[1], p[2], p[3], p[4], p[0], p[5])

    def _read(self, offset, n):
        r = _h.esp32_read(self._p[0], offset, n)
        if isinstance(r, int):
            _chk(r)
        return unhexlify(r)

    def _write(self, offset, data):
        _chk(_h.esp32_write(self._p[0], offset, hexlify(data).decode()))

    def _erase(self, offset, n):
        _chk(_h.esp32_erase(self._p[0], offset, n))

    def readblocks(self, block_num, buf, offset=None):
        o = (block_num * self._bs + (0 if offset is None else offset)) & 0xFFFFFFFF
        buf[0 : len(buf)] = self._read(o, len(buf))

    def writeblocks(self, block_num, buf, offset=None):
        data = bytes(buf)
        o = (block_num * self._bs) & 0xFFFFFFFF
        if offset is not None:
            # An extended write: the caller erased first.
            o = (o + offset) & 0xFFFFFFFF
        elif self._bs >= 4096:
            self._erase(o, len(data))
        else:
            # Smaller blocks: erase whole sectors, keeping what lies around the write.
            addr = o // 4096 * 4096
            top = o + len(data)
            first = o % 4096
            while addr < top:
                keep = self._read(addr, 4096) if first or top < addr + 4096 else None
                self._erase(addr, 4096)
                if first:
                    self._write(addr, keep[:first])
                if top < addr + 4096:
                    self._write(top, keep[top - addr :])
                first = 0
                addr += 4096
        self._write(o, data)

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):
            return 0
        if cmd == 4:
            return self._p[4] // self._bs
        if cmd == 5:
            return self._bs
        if cmd == 6:
            if self._bs != 4096:
                return -22  # -MP_EINVAL
            self._erase((arg * 4096) & 0xFFFFFFFF, 4096)
            return 0
        return None

    def set_boot(self):
        _chk(_h.esp32_set_boot(self._p[0]))

    def get_next_update(self):
        label = _h.esp32_next(self._p[0])
        return _new(_entry(label) if label else None, 4096)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        _chk(_h.esp32_mark_valid())
`;

/** /lib modules written into every simulated ESP32. */
export const ESP32_HOST_MODULES: Record<string, string> = {
  "lib/machine.py": machine,
  "lib/esp.py": esp,
  "lib/esp32.py": esp32,
  "lib/_mpota_sys.py": sysSource("esp32", BOARD_MPY.esp32),
  "lib/network.py": HOST_MODULES["lib/network.py"] as string,
  "lib/socket.py": HOST_MODULES["lib/socket.py"] as string,
};

/** The `os.uname()` fields of an ESP32 build for this board (modos.c: sysname "esp32"). */
export function esp32Uname(boardName: string): { sysname: string; nodename: string; machine: string } {
  return { sysname: "esp32", nodename: "esp32", machine: `${boardName} with ESP32` };
}
