"""What `uptend agent status` shows, read from disk only (it works while the agent runs)."""

import contextlib
import json
from dataclasses import asdict

from uptend.agent import config as agent_config
from uptend.agent import files
from uptend.agent.journal import Journal
from uptend.agent.layout import Layout
from uptend.agent.settingskeeper import effective_config, settings_state


def status(layout: Layout) -> dict[str, object]:
    """What `uptend agent status` shows, read from disk only (works while the agent runs)."""
    cfg = effective_config(layout, agent_config.load(layout))  # the server in force
    apps = {}
    for app in layout.apps():
        p = Journal(layout.journal(app), layout.app_dir(app)).load()
        run: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            run = json.loads(layout.run_file(app).read_text())
        apps[app] = {
            "current": files.read_current(layout.app_dir(app)),
            "phase": p.phase.value,
            "target": p.target,
            "failure": p.failure,
            "bad": list(p.bad),
            "pid": run.get("pid"),
        }
    return {
        "agent_id": cfg.agent_id,
        "name": cfg.name,
        "server": cfg.server,
        "apps": apps,
        "settings": asdict(settings_state(layout)),  # the signed agent settings' versions
    }
