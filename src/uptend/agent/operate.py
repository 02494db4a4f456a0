"""Carrying out the operator's commands: start, stop, restart, check-now, retry, each id once.

Each outcome is recorded in the `CommandBook` (one durable write per answer) before the
supervisor acts on it, so a command is never carried out twice. A restart is taken the same
way (its id recorded as begun) but acknowledged only once the app is back up and healthy
(`healthwatch.HealthWatch`: alive through its probation, then its probes), or with why it is
not; an agent restarted meanwhile judges the app again and acknowledges then. A retry lets
a failed version be tried again (`decide.retry`, an idempotent change of the app's journal,
made before the record: a kill -9 between the two means the same harmless change again).
Nothing here blocks: a stop is a SIGTERM polled by the supervisor, and what must start once
it is gone waits in `to_start` for the loop's tick.
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from uptend.agent.commands import STOPPED_BY_OPERATOR, CommandBook, expired
from uptend.agent.healthwatch import HealthWatch
from uptend.agent.layout import Layout
from uptend.agent.supervisor import Supervisor
from uptend.agent.wire import AppState, AppStatus, Command, CommandOutcome

log = logging.getLogger("uptend.agent")
ACTIONS = ("start", "stop", "restart", "check-now", "retry")
STOPPED_BEFORE_UP = "stopped by an operator's stop before it was up"
RESYNC = (
    "not run: this agent's command record was damaged, so it cannot tell whether it ran this"
    " one already; send it again if it did not take effect"
)


def _no_retry(_app: str) -> None:
    raise AssertionError("this operator was given no way to retry")


class Operator:
    def __init__(
        self,
        book: CommandBook,
        supervisor: Supervisor,
        retry: Callable[[str], None] = _no_retry,
    ) -> None:
        self.book = book
        self.supervisor = supervisor
        self.layout: Layout = supervisor.layout
        self.retry = retry  # let the app's failed version be tried again
        self.to_start: set[str] = set()  # start once the supervisor says they are gone
        self.watches: dict[str, HealthWatch] = {}  # restarted apps being judged
        self._verdicts: dict[str, str | None] = {}  # judged apps: why not up (None: up)
        self.check_now = False  # a check-now came, or a restart was judged: check in at once

    @property
    def busy(self) -> bool:
        """A restart is not judged yet (its ack is still to come)."""
        return bool(self.book.running)

    def resume(self) -> None:
        """At start-up: what an operator stopped stays stopped (adopted processes too).

        A restart begun by an agent that died is judged again: its apps are started if they
        are not running, never stopped a second time.
        """
        for app in sorted(self.book.stopped):
            self.supervisor.stop(app)
        for apps in self.book.running.values():
            for app in apps:
                if app in self.book.stopped:
                    self._verdicts[app] = STOPPED_BEFORE_UP
                else:
                    self.to_start.add(app)

    def carry_out(
        self, commands: list[Command], apps: list[str], busy: Callable[[str], bool]
    ) -> None:
        now = datetime.now(UTC)
        todo: list[tuple[str, list[str]]] = []
        for c in commands:
            if self.book.seen(c.id):  # a redelivery: its ack goes again, nothing runs
                continue
            if self.book.resyncing:
                log.warning(
                    "command %d (%s) refused: the command record was damaged", c.id, c.action
                )
                self.book.record(c.id, CommandOutcome.FAILED, RESYNC)
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
            if c.action == "restart":
                self.book.begin(c.id, targets)  # acknowledged once they are back up
                log.info("command %d: restart: %s", c.id, " ".join(targets))
            else:
                done = {"check-now": "checking in now"}.get(
                    c.action, f"{c.action}: {' '.join(targets)}"
                )
                if c.action == "retry":
                    for app in targets:
                        self.retry(app)
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
        if c.action == "retry" and c.app is None:
            return "retry needs the app to retry", []
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
        if action == "retry":
            return
        for app in targets:
            if action in ("stop", "restart"):
                self.supervisor.stop(app)
                self._unwatch(app)
            if action == "stop":
                self.to_start.discard(app)
                if self._restarting(app):
                    self._verdicts[app] = STOPPED_BEFORE_UP
            else:
                self.to_start.add(app)

    def tick(self) -> None:
        for app in self.book.stopped:  # polled until gone (and reaped): the loop never waits
            self.supervisor.stopped(app)
        for app in sorted(self.to_start):
            if self.supervisor.stopped(app):
                self.supervisor.start(app)
                self.to_start.discard(app)
                if self._restarting(app):
                    self.watches[app] = HealthWatch(self.layout, self.supervisor, app)
        self._judge()

    def _restarting(self, app: str) -> bool:
        return any(app in apps for apps in self.book.running.values())

    def _unwatch(self, app: str) -> None:
        watch = self.watches.pop(app, None)
        if watch is not None:
            watch.cancel()

    def _judge(self) -> None:
        """Acknowledge each restart whose apps are all judged: up, or why not."""
        for app, watch in list(self.watches.items()):
            finished, why = watch.poll()
            if finished:
                self._verdicts[app] = why
                del self.watches[app]
        if not self._verdicts:
            return
        judged = False
        for command_id, apps in list(self.book.running.items()):
            if not all(a in self._verdicts for a in apps):
                continue
            failed = {a: self._verdicts[a] for a in apps if self._verdicts[a] is not None}
            if failed:
                why = "; ".join(f"{w}" for w in failed.values())
                self.book.record(command_id, CommandOutcome.FAILED, f"restart: not up: {why}")
                log.warning("command %d: restart: not up: %s", command_id, why)
            else:
                self.book.record(command_id, CommandOutcome.DONE, f"restart: {' '.join(apps)} up")
                log.info("command %d: restart: %s up", command_id, " ".join(apps))
            self.check_now = True  # its ack goes now, not at the next poll
            judged = True
        if judged:
            self.book.save()
        for app in list(self._verdicts):
            if not self._restarting(app):
                del self._verdicts[app]

    def status(self, status: AppStatus) -> AppStatus:
        """`status` as `fleet list` should show it: a stopped app says who stopped it."""
        if status.app in self.book.stopped and status.state is AppState.STOPPED:
            return replace(status, reason=STOPPED_BY_OPERATOR)
        return status
