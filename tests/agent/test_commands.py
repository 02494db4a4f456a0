"""The agent's side of operator commands: each id carried out once, across restarts.

A real `CommandBook` on disk and a real `Supervisor` watched through a subclass that counts
what it is asked to do; a restart is judged on a real app process (a Python sleeper
installed as `web` 1.0, with a short probation), acknowledged only once it is back up.
"""

import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from uptend.agent import files
from uptend.agent.commands import STOPPED_BY_OPERATOR, CommandBook
from uptend.agent.layout import Layout
from uptend.agent.operate import RESYNC, Operator
from uptend.agent.supervisor import Supervisor
from uptend.agent.wire import AppState, AppStatus, Command, CommandOutcome
from uptend.server.services.commands import STOPPED_BY_OPERATOR as SERVER_SAYS

SUPERVISORS: list[Supervisor] = []


class Watched(Supervisor):
    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.calls: list[tuple[str, str]] = []
        SUPERVISORS.append(self)

    def stop(self, app: str) -> None:
        self.calls.append(("stop", app))
        super().stop(app)

    def start(self, app: str) -> None:
        self.calls.append(("start", app))
        super().start(app)


@pytest.fixture(autouse=True)
def _stop_apps() -> Iterator[None]:
    yield
    while SUPERVISORS:
        SUPERVISORS.pop().stop_all()


def agent(tmp_path: Path, retried: list[str] | None = None) -> tuple[Operator, Watched]:
    layout = Layout(tmp_path)
    layout.make()
    supervisor = Watched(layout)
    book = CommandBook(layout.state_dir / "commands.json")
    if retried is None:
        return Operator(book, supervisor), supervisor
    return Operator(book, supervisor, retry=retried.append), supervisor


def install(tmp_path: Path, app: str = "web", code: str = "import time; time.sleep(60)") -> None:
    """`app` 1.0 installed: a Python process running `code`, probation 0.3 s."""
    layout = Layout(tmp_path)
    layout.make()
    layout.make_app(app)
    where = layout.version_dir(app, "1.0")
    where.mkdir()
    (where / "uptend.toml").write_text(
        f'[app]\ncommand = [{sys.executable!r}, "-c", {code!r}]\n\n[health]\nprobation = 0.3\n'
    )
    files.point_current_at(layout.app_dir(app), "1.0")


def never_busy(_app: str) -> bool:
    return False


def ticked_until(operator: Operator, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Tick as the agent's loop does until `done` (the app's process is observed, not slept)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        operator.tick()
        time.sleep(0.02)


def test_a_command_delivered_again_after_a_restart_is_acked_again_not_run_again(
    tmp_path: Path,
) -> None:
    install(tmp_path)
    operator, supervisor = agent(tmp_path)
    restart = Command(id=7, action="restart", app="web")
    operator.carry_out([restart], ["web", "db"], never_busy)
    ticked_until(operator, lambda: bool(operator.book.acks(10)))
    assert supervisor.calls == [("stop", "web"), ("start", "web")]
    [ack] = operator.book.acks(10)
    assert (ack.id, ack.state, ack.result) == (7, CommandOutcome.DONE, "restart: web up")
    supervisor.stop_all()

    again, watched = agent(tmp_path)  # a new agent process: the book is read from disk
    again.carry_out([restart], ["web", "db"], never_busy)  # the ack was lost: redelivered
    again.tick()
    assert watched.calls == []
    assert [a.id for a in again.book.acks(10)] == [7]
    again.book.delivered(again.book.acks(10))
    assert CommandBook(tmp_path / "state" / "commands.json").unacked == []
    again.carry_out([restart], ["web", "db"], never_busy)  # even once acknowledged
    assert watched.calls == []
    assert [a.id for a in again.book.acks(10)] == [7]  # and its ack goes once more


def test_a_restart_is_acknowledged_once_the_app_is_back_up_not_when_issued(
    tmp_path: Path,
) -> None:
    install(tmp_path)
    operator, supervisor = agent(tmp_path)
    supervisor.start("web")
    operator.carry_out([Command(id=1, action="restart", app="web")], ["web"], never_busy)
    ticked_until(operator, lambda: supervisor.calls[-1] == ("start", "web"))
    started = time.monotonic()
    assert operator.book.acks(10) == []  # issued, and running again: not up yet
    assert (operator.busy, operator.check_now) == (True, False)
    assert CommandBook(tmp_path / "state" / "commands.json").running == {1: ["web"]}
    ticked_until(operator, lambda: bool(operator.book.acks(10)))
    assert time.monotonic() - started >= 0.3  # the probation
    assert operator.book.acks(10)[0].state is CommandOutcome.DONE
    assert (operator.busy, operator.check_now) == (False, True)  # its ack goes at once
    assert supervisor.alive("web")


def test_a_restart_that_does_not_come_back_up_fails_with_the_reason(tmp_path: Path) -> None:
    install(tmp_path, code="raise SystemExit(3)")
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="restart", app="web")], ["web"], never_busy)
    ticked_until(operator, lambda: bool(operator.book.acks(10)))
    [ack] = operator.book.acks(10)
    assert ack.state is CommandOutcome.FAILED
    assert ack.result == "restart: not up: web exited with code 3"


def test_a_restart_cut_by_the_agent_dying_is_judged_by_the_next_agent_not_run_again(
    tmp_path: Path,
) -> None:
    install(tmp_path)
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="restart", app="web")], ["web"], never_busy)
    # the agent dies here: the app was stopped and never started again

    after, watched = agent(tmp_path)
    after.resume()
    after.carry_out([Command(id=1, action="restart", app="web")], ["web"], never_busy)
    ticked_until(after, lambda: bool(after.book.acks(10)))
    assert watched.calls == [("start", "web")]  # started, never stopped a second time
    assert after.book.acks(10)[0].state is CommandOutcome.DONE


def test_a_retry_runs_once_however_often_it_is_delivered(tmp_path: Path) -> None:
    retried: list[str] = []
    operator, supervisor = agent(tmp_path, retried)
    retry = Command(id=4, action="retry", app="web")
    operator.carry_out([retry], ["web"], never_busy)
    operator.carry_out([retry], ["web"], never_busy)
    agent(tmp_path, retried)[0].carry_out([retry], ["web"], never_busy)  # another process
    assert retried == ["web"]
    assert supervisor.calls == []  # a retry stops nothing
    [ack] = operator.book.acks(10)
    assert (ack.state, ack.result) == (CommandOutcome.DONE, "retry: web")
    operator.carry_out([Command(id=5, action="retry")], ["web"], never_busy)
    assert operator.book.acks(10)[-1].result == "retry needs the app to retry"


def test_stop_lasts_until_start_across_restarts_and_is_reported(tmp_path: Path) -> None:
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="stop")], ["web", "db"], never_busy)
    after, supervisor = agent(tmp_path)
    assert after.book.stopped == {"web", "db"}
    after.resume()
    assert sorted(supervisor.calls) == [("stop", "db"), ("stop", "web")]
    stopped = AppStatus(app="web", version="1.0", state=AppState.STOPPED, reason="not running")
    assert after.status(stopped).reason == STOPPED_BY_OPERATOR == SERVER_SAYS
    after.carry_out([Command(id=2, action="start", app="web")], ["web", "db"], never_busy)
    assert agent(tmp_path)[0].book.stopped == {"db"}
    assert after.status(stopped).reason == "not running"  # started: no longer the operator's
    running = AppStatus(app="web", version="1.0", state=AppState.RUNNING)
    assert after.status(running) == running


def test_expired_unknown_and_busy_commands_are_not_run_and_say_why(tmp_path: Path) -> None:
    operator, supervisor = agent(tmp_path)
    past = datetime.now(UTC) - timedelta(seconds=1)
    operator.carry_out(
        [
            Command(id=1, action="stop", app="web", expires_at=past),
            Command(id=2, action="reboot"),
            Command(id=3, action="stop", app="nope"),
            Command(id=4, action="stop", app="web"),
        ],
        ["web"],
        lambda app: app == "web",  # an update of web is in flight
    )
    assert supervisor.calls == []
    outcomes = {a.id: (a.state, a.result) for a in operator.book.acks(10)}
    assert outcomes[1] == (CommandOutcome.EXPIRED, "arrived after its expiry")
    assert outcomes[2][0] is CommandOutcome.FAILED
    assert "unknown command" in outcomes[2][1]
    assert outcomes[3] == (CommandOutcome.FAILED, "no app nope on this agent")
    assert outcomes[4][0] is CommandOutcome.FAILED
    assert "in progress" in outcomes[4][1]


def test_check_now_asks_the_loop_to_check_in(tmp_path: Path) -> None:
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="check-now")], ["web"], never_busy)
    assert operator.check_now is True


def test_a_damaged_record_is_read_from_its_twin_and_nothing_runs_twice(tmp_path: Path) -> None:
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="stop")], ["web"], never_busy)
    path = tmp_path / "state" / "commands.json"
    path.write_bytes(path.read_bytes().replace(b"web", b"wex"))
    after, supervisor = agent(tmp_path)
    assert (after.book.stopped, after.book.resyncing) == ({"web"}, False)
    after.carry_out([Command(id=1, action="stop")], ["web"], never_busy)  # redelivered
    assert supervisor.calls == []
    after.carry_out([Command(id=2, action="start", app="web")], ["web"], never_busy)
    assert after.book.stopped == set()

    # the newer copy wins when both verify (an agent killed between the two writes)
    backup = tmp_path / "state" / "commands.json.bak"
    old = path.read_bytes()
    after.book.stopped.add("db")
    after.book.save()
    new = path.read_bytes()
    for primary, twin in ((new, old), (old, new)):
        path.write_bytes(primary)
        backup.write_bytes(twin)
        assert CommandBook(path).stopped == {"db"}


def test_with_no_copy_that_verifies_the_next_answers_commands_are_refused_then_new_ones_run(
    tmp_path: Path,
) -> None:
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="stop", app="web")], ["web"], never_busy)
    for name in ("commands.json", "commands.json.bak"):
        damaged = tmp_path / "state" / name
        damaged.write_bytes(damaged.read_bytes().replace(b"web", b"wex"))

    after, supervisor = agent(tmp_path)
    assert after.book.resyncing
    assert after.book.done == {}
    # id 1 ran but its ack was lost: redelivered with a new one; neither runs
    stop, check = Command(id=1, action="stop", app="web"), Command(id=2, action="check-now")
    after.carry_out([stop, check], ["web"], never_busy)
    assert supervisor.calls == []
    assert not after.check_now
    assert {(a.id, a.state, a.result) for a in after.book.acks(10)} == {
        (1, CommandOutcome.FAILED, RESYNC),
        (2, CommandOutcome.FAILED, RESYNC),
    }
    resyncing = [after.book.resyncing]  # (the loop says when an answer is taken)
    after.book.resynced()  # that answer held every pending command
    assert [*resyncing, after.book.resyncing] == [True, False]
    after.carry_out([stop, Command(id=3, action="stop", app="web")], ["web"], never_busy)
    assert supervisor.calls == [("stop", "web")]  # 3 only: 1 stays refused
    assert not agent(tmp_path)[0].book.resyncing  # the record is good again on disk
