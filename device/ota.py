# Enter yaota8266's OTA receiver: boot8266 (with ulno's RTC patch) sees the
# magic in RTC memory after the reset and starts the receiver at once.
#   >>> import ota
#   >>> ota.start()
import machine


def start():
    machine.RTC().memory(b"yaotaota")
    machine.reset()
