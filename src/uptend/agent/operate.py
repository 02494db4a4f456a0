"""Carrying out the operator's commands: start, stop, restart, check-now, each id once.

Each outcome is recorded in the `CommandBook` (one durable write per answer) before the
supervisor acts on it, so a command is never carried out twice. Nothing here blocks: a stop
is a SIGTERM polled by the supervisor, and what must start once it is gone waits in
`to_start` for the loop's tick.
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from uptend.agent.commands import STOPPED_BY_OPERATOR, CommandBook, expired
from uptend.agent.supervisor import Supervisor
from uptend.agent.wire import AppState, AppStatus, Command, CommandOutcome

log = logging.getLogger("uptend.agent")
ACTIONS = ("start", "stop", "restart", "check-now")


class Operator:
    def __init__(self, book: CommandBook, supervisor: Supervisor) -> None:
        self.book = book
        self.supervisor = supervisor
        self.to_start: set[str] = set()  # start once the supervisor says they are gone
        self.check_now = False  # a check-now came: check in at once

    def resume(self) -> None:
        """At start-up: what an operator stopped stays stopped (adopted processes too)."""
        for app in sorted(self.book.stopped):
            self.supervisor.stop(app)

    def carry_out(
        self, commands: list[Command], apps: list[str], busy: Callable[[str], bool]
    ) -> None:
        now = datetime.now(UTC)
        todo: list[tuple[str, list[str]]] = []
        for c in commands:
            if self.book.seen(c.id):  # a redelivery: its ack goes again, nothing runs
                continue
            if expired(c.expires_at, now):
                self.book.record(c.id, CommandOutcome.EXPIRED, "arrived after its expiry")
                continue
            why, targets = self._refusal(c, apps, busy)
            if why:
                log.warning("command %d (%s) refused: %s", c.id, c.action, why)
                self.book.record(c.id, CommandOutcome.FAILED, why)
                continue
            if c.action == "stop":
                self.book.stopped.update(targets)
            elif c.action in ("start", "restart"):
                self.book.stopped.difference_update(targets)
            done = {"check-now": "checking in now"}.get(
                c.action, f"{c.action}: {' '.join(targets)}"
            )
            self.book.record(c.id, CommandOutcome.DONE, done)
            log.info("command %d: %s", c.id, done)
            todo.append((c.action, targets))
        if commands:
            self.book.save()  # before acting: a kill -9 after this never runs them again
        for action, targets in todo:
            self._act(action, targets)

    def _refusal(
        self, c: Command, apps: list[str], busy: Callable[[str], bool]
    ) -> tuple[str, list[str]]:
        if c.action not in ACTIONS:
            return f"unknown command {c.action!r} (this agent knows {', '.join(ACTIONS)})", []
        if c.action == "check-now":
            return "", []
        if c.app is not None and c.app not in apps:
            return f"no app {c.app} on this agent", []
        targets = [c.app] if c.app is not None else list(apps)
        updating = [a for a in targets if busy(a)]
        if updating:
            return f"an update of {', '.join(updating)} is in progress: send it again after", []
        return "", targets

    def _act(self, action: str, targets: list[str]) -> None:
        if action == "check-now":
            self.check_now = True
        for app in targets:
            if action in ("stop", "restart"):
                self.supervisor.stop(app)
            if action == "stop":
                self.to_start.discard(app)
            else:
                self.to_start.add(app)

    def tick(self) -> None:
        for app in self.book.stopped:  # polled until gone (and reaped): the loop never waits
            self.supervisor.stopped(app)
        for app in sorted(self.to_start):
            if self.supervisor.stopped(app):
                self.supervisor.start(app)
                self.to_start.discard(app)

    def status(self, status: AppStatus) -> AppStatus:
        """`status` as `fleet list` should show it: a stopped app says who stopped it."""
        if status.app in self.book.stopped and status.state is AppState.STOPPED:
            return replace(status, reason=STOPPED_BY_OPERATOR)
        return status
