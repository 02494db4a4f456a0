"""Plan <-> bytes on disk, with a schema number and a checksum (atomic write + fsync).

A journal that is missing, truncated, zero-length or fails its checksum is not trusted:
`load` rebuilds an idle plan from what the disk shows (`current`), so the agent always
starts (TEST-CATALOGUE D34).
"""

import hashlib
import json
from pathlib import Path
from typing import Any

from uptend.agent import files
from uptend.agent.machine import Phase, Plan

SCHEMA = 1


def encode(plan: Plan) -> bytes:
    body = {
        "phase": plan.phase.value,
        "current": plan.current,
        "target": plan.target,
        "attempts": plan.attempts,
        "failure": plan.failure,
        "bad": list(plan.bad),
    }
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"schema": SCHEMA, "plan": body, "sha256": digest}).encode() + b"\n"


def decode(data: bytes) -> Plan:
    """Parse journal bytes; ValueError if they are not a whole, valid journal."""
    outer: Any = json.loads(data)
    if not isinstance(outer, dict) or outer.get("schema") != SCHEMA:
        raise ValueError("unknown journal schema")
    body = outer["plan"]
    text = json.dumps(body, sort_keys=True)
    if hashlib.sha256(text.encode()).hexdigest() != outer.get("sha256"):
        raise ValueError("journal checksum mismatch")
    return Plan(
        phase=Phase(body["phase"]),
        current=body["current"],
        target=body["target"],
        attempts=int(body["attempts"]),
        failure=str(body["failure"]),
        bad=tuple(str(v) for v in body["bad"]),
    )


class Journal:
    """The journal of one app."""

    def __init__(self, path: Path, app_dir: Path) -> None:
        self.path = path
        self.app_dir = app_dir

    def load(self) -> Plan:
        try:
            return decode(self.path.read_bytes())
        except FileNotFoundError:
            return Plan(current=files.read_current(self.app_dir))
        except (ValueError, KeyError, TypeError):
            # Damaged: trust only what the disk shows. A half-done update restarts from
            # scratch on the next directive; `current` is a whole version by construction.
            return Plan(current=files.read_current(self.app_dir), failure="journal was damaged")

    def save(self, plan: Plan) -> None:
        files.write_atomically(self.path, encode(plan))
