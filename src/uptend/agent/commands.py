"""The operator's commands on this host: which ids were carried out, which apps stay stopped.

The server hands a command out until a check-in acknowledges it, so an answer or an ack
lost on the way means the same command again. Its id is recorded here, with its outcome,
before it is carried out (one atomic, fsync'd write): a command seen again is acknowledged
again and never run a second time, even across a kill -9. `stopped` is the apps an operator
stopped: the supervisor leaves them stopped, across agent restarts, until a `start`.
`running` is the restarts begun and not yet judged: their ids are taken (never run again),
and their outcome is recorded once the apps are back up (`operate.Operator`).

A damaged record must not make a command run twice, so it is kept twice: each save writes
the same checksummed body, with a sequence number, to `commands.json` and then to
`commands.json.bak`, and a load takes the newest copy that verifies. When neither does
(both damaged, or one missing and the other damaged), the book does not know which
commands ran: it is `resyncing`, and the operator refuses every command of the next answer
that is not recorded (acked as failed, "send it again"), since that answer holds every
command the server still has pending for this agent, and then trusts its record again.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
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
        self.backup = path.with_name(path.name + ".bak")
        self.done: dict[int, tuple[str, str]] = {}  # id -> (outcome, result), oldest first
        self.unacked: list[int] = []  # ids whose outcome no check-in has delivered yet
        self.stopped: set[str] = set()
        self.running: dict[int, list[str]] = {}  # restarts begun: id -> apps, not yet judged
        self.seq = 0  # saves so far: the newer of the two copies has the higher one
        self.resyncing = False  # the record is lost: refuse the next answer's commands
        self._load()

    def _load(self) -> None:
        copies: list[_Copy] = []
        damaged = False
        for path in (self.path, self.backup):
            try:
                copies.append(_read(path))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                damaged = True
                log.warning("the command record %s is damaged (%s)", path, e)
        if not copies:
            if damaged:
                self.resyncing = True
                log.warning(
                    "no copy of the command record verifies: the commands of the next answer"
                    " are refused (the server holds them pending), then the record restarts"
                )
            return
        newest = max(copies, key=lambda c: c.seq)
        self.seq, self.done, self.unacked = newest.seq, newest.done, newest.unacked
        self.stopped, self.running = newest.stopped, newest.running

    def resynced(self) -> None:
        """An answer's commands were refused: from now on the record holds what ran."""
        if self.resyncing:
            self.resyncing = False
            self.save()  # two good copies again
            log.info("the command record is in step with the server again")

    def save(self) -> None:
        while len(self.done) > KEEP:
            del self.done[next(iter(self.done))]
        self.seq += 1
        body = {
            "done": [[i, s, r] for i, (s, r) in self.done.items()],
            "unacked": self.unacked,
            "stopped": sorted(self.stopped),
            "running": [[i, apps] for i, apps in self.running.items()],
            "seq": self.seq,
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        data = json.dumps({"book": body, "sha256": digest}).encode()
        files.write_atomically(self.path, data)
        files.write_atomically(self.backup, data)  # the same: a damaged one has its twin

    def seen(self, command_id: int) -> bool:
        """Whether `command_id` was carried out already (its ack is then due again)."""
        if command_id in self.running:
            return True  # begun: its ack goes once the apps are judged
        if command_id not in self.done:
            return False
        if command_id not in self.unacked:
            self.unacked.append(command_id)
        return True

    def record(self, command_id: int, outcome: CommandOutcome, result: str) -> None:
        """Note the outcome before acting on it: saved by the caller with `save`."""
        self.running.pop(command_id, None)
        self.done[command_id] = (outcome.value, result)
        self.unacked.append(command_id)

    def begin(self, command_id: int, apps: list[str]) -> None:
        """A restart taken: never run again; its outcome is recorded once it is judged."""
        self.running[command_id] = apps

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


@dataclass(frozen=True, slots=True)
class _Copy:
    seq: int
    done: dict[int, tuple[str, str]]
    unacked: list[int]
    stopped: set[str]
    running: dict[int, list[str]]


def _read(path: Path) -> _Copy:
    outer: Any = json.loads(path.read_bytes())
    body = outer["book"]
    text = json.dumps(body, sort_keys=True)
    if hashlib.sha256(text.encode()).hexdigest() != outer["sha256"]:
        raise ValueError("checksum mismatch")
    done = {int(i): (str(s), str(r)) for i, s, r in body["done"]}
    return _Copy(
        seq=int(body.get("seq", 0)),  # a book from before the backup: seq 0
        done=done,
        unacked=[int(i) for i in body["unacked"] if int(i) in done],
        stopped={str(a) for a in body["stopped"]},
        running={int(i): [str(a) for a in apps] for i, apps in body.get("running", [])},
    )


def expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
