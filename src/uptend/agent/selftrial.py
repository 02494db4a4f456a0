"""A new agent version's trial: `python -m uptend.agent.selftrial DATA_DIR NONCE`.

The running agent's worker child runs this in the new version's environment before that
version may become current (agent/installers/agent.py). It proves what a working agent
needs: its code loads (the resident agent's modules), it reads the data dir (enrollment,
journals, last directives), it completes a real check-in, and a no-op update cycle decides
every directive (nothing is acted on, nothing written: the running agent holds the data
dir). It prints `trial ok <version> <nonce>` and exits 0; anything else fails the trial.
"""

import json
import os
import sys
import time
from pathlib import Path

from uptend import __version__
from uptend.agent import config as agent_config
from uptend.agent import decide, files, wire
from uptend.agent.control import ControlClient
from uptend.agent.installers import supported
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.machine import Plan
from uptend.agent.runner import Agent  # noqa: F401 - the resident agent's code must load
from uptend.agent.settingskeeper import effective_config
from uptend.agent.status import app_status
from uptend.agent.wire import CheckIn, Directives


def _no_store(_credential: str) -> None:
    # a credential offered to the trial is not kept: the running agent gets another one
    raise OSError("the trial does not store credentials")


def _alive(layout: Layout, app: str) -> bool:
    """The app's recorded process runs (the running agent supervises it, not the trial)."""
    try:
        pid = json.loads(layout.run_file(app).read_text()).get("pid")
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return True


def trial(root: Path) -> int:
    layout = Layout(root)
    config = effective_config(layout, agent_config.load(layout))  # signed settings too
    plans = {app: Journal(layout.journal(app), layout.app_dir(app)).load() for app in layout.apps()}
    last: Directives | None = None
    if layout.directives.exists():
        last = wire.decode(Directives, layout.directives.read_bytes())
    statuses = [
        app_status(
            app, plan, files.read_current(layout.app_dir(app)), _alive(layout, app), (None,) * 3, ""
        )
        for app, plan in plans.items()
    ]
    control = ControlClient(
        config.server, config.credential, store=_no_store, ca_file=layout.ca_file()
    )
    try:
        directives = control.checkin(CheckIn(agent_version=__version__, apps=statuses), last)
    finally:
        control.close()
    facts = decide.Facts(
        now=time.time(), rand=0.5, poll_s=directives.poll_interval_s, kinds=supported()
    )
    for directive in directives.apps:
        decide.decide(directive, plans.get(directive.app) or Plan(), facts)
    return len(directives.apps)


def main(argv: list[str]) -> int:
    root, nonce = Path(argv[0]), argv[1]
    trial(root)
    sys.stdout.write(f"trial ok {__version__} {nonce}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
