# mpota agent settings: copy to the board and edit. WiFi credentials are
# kept by the ESP8266 itself (set them once with network.WLAN().connect()).
MQTT_HOST = "192.168.1.10"
MQTT_PORT = 1883
# The broker credentials of this device: its id and its own secret
# (`mpota devices add <id>` prints them).
MQTT_USER = None
MQTT_PASSWORD = None
# None: the hex of machine.unique_id(), e.g. "a1b2c3d4"; else [A-Za-z0-9_-]{1,64}
DEVICE_ID = None
# Moduli (hex) of the keys whose signed commands the agent obeys, up to 3:
# the server's command key (`openssl rsa -in command-key.pem -modulus
# -noout`). A signed `keys` command replaces them from then on.
CMD_KEYS = ()
# Moduli (hex) of the keys whose app releases the board installs, up to 3:
# `mpota app key` prints the server's; `mpota devices add` writes it here.
APP_KEYS = ()
# A sleepy board's app update stops between files this long after the wake
# began and goes on at the next wake.
APP_WAKE_MS = 20000
# True: also obey unsigned commands (contract v1), as agents before
# signed commands did. Anyone who can publish on the broker can then
# send the board into OTA mode.
ALLOW_UNSIGNED = False
BASE_TOPIC = "mpota"
# Seconds between the wakes of a deep-sleeping device (at most 4294: about
# 71 minutes is the longest single deep sleep); 0: always on.
SLEEP = 0
# Refuse updates below this battery voltage; 0: no check.
MIN_VBAT = 0
# Volts per count of machine.ADC(0) (e.g. 4.2 / 1024 with a divider);
# None: no battery reading.
VBAT_ADC_SCALE = None
# How long to wait after check-in for a retained command.
CMD_WAIT_MS = 500
# Where yaota8266 keeps the MicroPython image (its MD5 trailer is the
# firmware identity).
MAIN_APP_OFFSET = 0x3C000
KEEPALIVE = 60
# An always-on agent retries a lost connection this often.
RETRY_MS = 5000
# Only for a board that has no stored WiFi.
WIFI_SSID = None
WIFI_PASSWORD = None
WIFI_TIMEOUT_MS = 15000
