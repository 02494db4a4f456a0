"""Plan <-> bytes on disk, with a schema number and a checksum (atomic write + fsync).

A journal that is missing, truncated, zero-length or fails its checksum is not trusted:
`load` rebuilds an idle plan from what the disk shows (`current`), so the agent always
starts (docs/faults.md D34). Schema 1 (bundle phase names, no holds or pending reports) is
read and resumed as the same step under its kind-neutral name.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from uptend.agent import files
from uptend.agent.machine import Hold, HoldState, Pending, Phase, Plan

SCHEMA = 2
_SCHEMA_1_PHASES = {
    "idle": Phase.IDLE,
    "downloading": Phase.FETCHING,
    "unpacking": Phase.STAGING,
    "switching": Phase.ACTIVATING,
    "probation": Phase.PROBATION,
    "rolling_back": Phase.ROLLING_BACK,
}


def encode(plan: Plan) -> bytes:
    body = asdict(plan)
    body["phase"] = plan.phase.value
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"schema": SCHEMA, "plan": body, "sha256": digest}).encode() + b"\n"


def decode(data: bytes) -> Plan:
    """Parse journal bytes; ValueError if they are not a whole, valid journal."""
    outer: Any = json.loads(data)
    if not isinstance(outer, dict) or outer.get("schema") not in (1, SCHEMA):
        raise ValueError("unknown journal schema")
    body = outer["plan"]
    text = json.dumps(body, sort_keys=True)
    if hashlib.sha256(text.encode()).hexdigest() != outer.get("sha256"):
        raise ValueError("journal checksum mismatch")
    phase = _SCHEMA_1_PHASES[body["phase"]] if outer["schema"] == 1 else Phase(body["phase"])
    hold = body.get("hold")
    return Plan(
        phase=phase,
        current=body["current"],
        target=body["target"],
        attempts=int(body["attempts"]),
        failure=str(body["failure"]),
        bad=tuple(str(v) for v in body["bad"]),
        deadline=float(body.get("deadline", 0.0)),
        tries=int(body.get("tries", 0)),
        retry_at=float(body.get("retry_at", 0.0)),
        hold=None if hold is None else Hold(**{**hold, "state": HoldState(hold["state"])}),
        pending=tuple(Pending(**p) for p in body.get("pending", ())),
        said=str(body.get("said", "")),
        waiting=str(body.get("waiting", "")),
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
