# main.py of a deep-sleeping sensor (SLEEP > 0 in mpota_config.py; GPIO16
# wired to RST so the timer can wake it). Check in, publish, sleep: an
# update command waiting on the broker is taken during check-in.
import machine
from mpota_agent import Agent

agent = Agent()
try:
    if agent.checkin():
        agent.publish("adc", machine.ADC(0).read())  # your sensor here
finally:
    agent.sleep()
