# main.py of a board that runs an mpota app (docs/app-updates.md): the
# loader starts the app in the active slot (/app/a or /app/b), then the agent
# checks in and takes updates of the app (and of the firmware). The app's
# main.py sets itself up and returns. SLEEP > 0 in mpota_config.py: check in
# and deep-sleep; else stay connected.
import mpota_loader

try:
    mpota_loader.run()
except Exception as e:
    # A confirmed app that fails: the agent still runs, so an update can fix it.
    import sys

    sys.print_exception(e)
import mpota_config
from mpota_agent import Agent

agent = Agent()
if getattr(mpota_config, "SLEEP", 0):
    try:
        agent.checkin()
    finally:
        agent.sleep()
else:
    agent.loop_forever()
