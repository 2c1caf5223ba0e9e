# main.py of a board that runs an mpota app (docs/app-updates.md): the
# loader starts the app in the active slot (/app/a or /app/b), then the agent
# checks in and takes updates of the app (and of the firmware). The app's
# main.py sets itself up and returns. SLEEP > 0 in mpota_config.py: check in
# and deep-sleep; else stay connected.
import sys

import mpota_loader

try:
    mpota_loader.run()
except Exception as e:
    # A confirmed app that fails: the agent still runs, so an update can fix it.
    sys.print_exception(e)
import mpota_config

# An app may ship the agent (mpota_agent.py, mpota_cmd.py, ...): its slot is
# first on sys.path. Until the app is confirmed (the agent's first state is
# out), an agent that raises here sends the board back to the previous app
# and its agent at once (give_up resets); network errors never get here.
agent = None
try:
    from mpota_agent import Agent

    agent = Agent()
    if getattr(mpota_config, "SLEEP", 0):
        agent.checkin()
        agent.sleep()
    else:
        agent.loop_forever()
except Exception as e:
    mpota_loader.give_up(e)
    if agent is None or not getattr(mpota_config, "SLEEP", 0):
        raise
    sys.print_exception(e)
    agent.sleep()  # a sleeper still sleeps: its next wake counts a boot
