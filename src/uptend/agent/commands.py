"""The operator's commands on this host: which ids were carried out, which apps stay stopped.

The server hands a command out until a check-in acknowledges it, so an answer or an ack
lost on the way means the same command again. Its id is recorded here, with its outcome,
before it is carried out (one atomic, fsync'd write): a command seen again is acknowledged
again and never run a second time, even across a kill -9. `stopped` is the apps an operator
stopped: the supervisor leaves them stopped, across agent restarts, until a `start`.

A damaged file (checksum) is not trusted: the book starts empty and says so in the log.
"""

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from uptend.agent import files
from uptend.agent.wire import CommandAck, CommandOutcome

log = logging.getLogger("uptend.agent")
KEEP = 1000  # ids remembered: far more than a server hands out before an ack reaches it
STOPPED_BY_OPERATOR = "stopped by operator"


class CommandBook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[int, tuple[str, str]] = {}  # id -> (outcome, result), oldest first
        self.unacked: list[int] = []  # ids whose outcome no check-in has delivered yet
        self.stopped: set[str] = set()
        self._load()

    def _load(self) -> None:
        try:
            outer: Any = json.loads(self.path.read_bytes())
            body = outer["book"]
            text = json.dumps(body, sort_keys=True)
            if hashlib.sha256(text.encode()).hexdigest() != outer["sha256"]:
                raise ValueError("checksum mismatch")
            self.done = {int(i): (str(s), str(r)) for i, s, r in body["done"]}
            self.unacked = [int(i) for i in body["unacked"] if int(i) in self.done]
            self.stopped = {str(a) for a in body["stopped"]}
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as e:
            log.warning("the command record %s is damaged (%s); starting afresh", self.path, e)

    def save(self) -> None:
        while len(self.done) > KEEP:
            del self.done[next(iter(self.done))]
        body = {
            "done": [[i, s, r] for i, (s, r) in self.done.items()],
            "unacked": self.unacked,
            "stopped": sorted(self.stopped),
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        files.write_atomically(self.path, json.dumps({"book": body, "sha256": digest}).encode())

    def seen(self, command_id: int) -> bool:
        """Whether `command_id` was carried out already (its ack is then due again)."""
        if command_id not in self.done:
            return False
        if command_id not in self.unacked:
            self.unacked.append(command_id)
        return True

    def record(self, command_id: int, outcome: CommandOutcome, result: str) -> None:
        """Note the outcome before acting on it: saved by the caller with `save`."""
        self.done[command_id] = (outcome.value, result)
        self.unacked.append(command_id)

    def acks(self, limit: int) -> list[CommandAck]:
        return [
            CommandAck(id=i, state=CommandOutcome(self.done[i][0]), result=self.done[i][1])
            for i in self.unacked[:limit]
        ]

    def delivered(self, acks: list[CommandAck]) -> None:
        if acks:
            sent = {a.id for a in acks}
            self.unacked = [i for i in self.unacked if i not in sent]
            self.save()


def expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
