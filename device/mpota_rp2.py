# mpota agent on an rp2 board (a Raspberry Pi Pico W): mpota updates its
# app only, never its firmware. mpota_agent.py imports this module where
# there is no esp module. See README.md ("Raspberry Pi Pico W").
import machine
import os
from binascii import hexlify
from hashlib import sha256

# The answer (ready:false) to a firmware command (op ota or pull).
REFUSE = "this rp2 board takes app updates only: mpota does not update its firmware (flash MicroPython by USB)"


def ident():
    # fw: no image trailer to read, so the MicroPython build it runs: the
    # first 32 hex digits of the SHA-256 of "<version>; <machine>" (the
    # REPL banner's words), which another build flashed by USB changes.
    # wake: reset_cause() is 1 at power-on (or the RUN pin), 3 after the
    # watchdog, which also ends machine.reset() and a deep sleep (a light
    # sleep, then that reset): those cannot be told apart.
    u = os.uname()
    fw = hexlify(sha256("%s; %s" % (u.version, u.machine)).digest()[:16]).decode()
    return fw, "power" if machine.reset_cause() == 1 else "other"
