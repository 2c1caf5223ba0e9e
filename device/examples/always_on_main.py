# main.py of an always-on device: stays connected and acts on an update
# command as soon as it arrives. For a loop of your own, call agent.poll()
# in it instead (poll(ms) may wait up to ms for a message).
from mpota_agent import Agent

Agent().loop_forever()
