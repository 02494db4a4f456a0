"""uptend's sample app: says which version it runs, once a second, in its state dir."""

import json
import os
import signal
import sys
import time
from pathlib import Path

VERSION = "1.0"

running = True


def stop(_signum, _frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
state = Path(os.environ["UPTEND_STATE_DIR"])
print(f"demo {VERSION} started (pid {os.getpid()})", flush=True)
while running:
    tmp = state / ".running.json.tmp"
    tmp.write_text(json.dumps({"version": VERSION, "pid": os.getpid(), "at": time.time()}))
    tmp.replace(state / "running.json")
    time.sleep(1)
print(f"demo {VERSION} stopping", flush=True)
sys.exit(0)
