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


def read():
    # VSYS for VBAT_ADC_SCALE (the agent calls this where an ESP has
    # ADC(0).read()): read_u16() of ADC3, GPIO29, which sees VSYS through a
    # 1/3 divider only while GPIO25 is high. On a Pico W both are the CYW43's
    # SPI lines: 29 its clock, 25 its select, high while the bus is idle.
    # The pico-sdk driver puts 29 back to its PIO, pulled down, as each
    # transfer starts (cyw43_bus_pio_spi.c), so no transfer may start between
    # taking the pin and reading it: pico-examples' adc/read_vsys holds the
    # CYW43 lock for that; Python cannot, but with interrupts off none
    # starts: the driver runs in our own calls or from PendSV on this core
    # (ports/rp2/mpnetworkport.c); not a thread on the other core. ADC(29)
    # gives the pin to the ADC (adc_gpio_init); ADC(3) would leave it to the
    # PIO (ports/rp2/machine_adc.c). The first sample after that is low.
    s = machine.disable_irq()
    try:
        machine.Pin(25, machine.Pin.OUT, value=1)
        a = machine.ADC(29)
        a.read_u16()
        return a.read_u16()
    finally:
        machine.enable_irq(s)
