/**
 * The `machine` module fake both ports share (reset, deep sleep, RTC memory,
 * unique_id, Pin), built with what differs per port (python-fakes.ts for the
 * ESP8266, python-esp32-fakes.ts for the ESP32).
 */

/** What differs between the ports' `machine` modules. */
export interface MachinePort {
  /** The reset-cause constants (and any other module constants), as Python lines. */
  constants: string;
  /** MICROPY_HW_RTC_USER_MEM_MAX: ESP8266 492, ESP32 2048; null: no RTC.memory() (rp2's RTC keeps the time only). */
  rtcMax: number | null;
  /** machine.freq() at boot. */
  freq: number;
  /** Pin.IN, OUT, OPEN_DRAIN, PULL_UP ... as class-body lines. */
  pinConstants: string;
  /** More module code (ADC, soft_reset ...). */
  extra: string;
}

const RTC_WITHOUT_MEMORY = `class RTC:
    pass`;

function rtcWithMemory(max: number): string {
  return `class RTC:
    def memory(self, data=None):
        if data is None:
            return unhexlify(_h.rtc_get())
        if isinstance(data, str):
            data = data.encode()
        data = bytes(data)
        if len(data) > ${max}:
            raise ValueError("buffer too long")
        _h.rtc_set(hexlify(data).decode())`;
}

/** A port's `machine` module: its constants and extras around what both ports' fakes share. */
export function machineSource(port: MachinePort): string {
  return `import _mpota_host as _h
from binascii import hexlify, unhexlify

${port.constants}


class HostReset(BaseException):
    # Raised by reset() and deepsleep(), which never return on the device;
    # the harness catches it and boots a fresh interpreter.
    pass


def reset_cause():
    return _h.reset_cause()


def unique_id():
    return unhexlify(_h.unique_id())


def reset():
    _h.reset()
    raise HostReset("reset")


def deepsleep(ms=None):
    _h.deepsleep(-1 if ms is None else int(ms))
    raise HostReset("deepsleep")


def lightsleep(ms=None):
    # Waits without burning the host's CPU (the wasm time.sleep_ms busy-waits).
    _h.delay(0 if ms is None else int(ms))


def freq(hz=None):
    if hz is None:
        return ${port.freq}


def idle():
    pass


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


${port.rtcMax === null ? RTC_WITHOUT_MEMORY : rtcWithMemory(port.rtcMax)}


class Pin:
${port.pinConstants}

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = id
        self._v = value or 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def __call__(self, v=None):
        return self.value(v)
${port.extra}`;
}
