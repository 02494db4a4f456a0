"""The agent's side of operator commands: each id carried out once, across restarts.

A real `CommandBook` on disk and a real `Supervisor` (of a layout with no app processes),
watched through a subclass that counts what it is asked to do.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from uptend.agent.commands import STOPPED_BY_OPERATOR, CommandBook
from uptend.agent.layout import Layout
from uptend.agent.operate import Operator
from uptend.agent.supervisor import Supervisor
from uptend.agent.wire import AppState, AppStatus, Command, CommandOutcome
from uptend.server.services.commands import STOPPED_BY_OPERATOR as SERVER_SAYS


class Watched(Supervisor):
    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.calls: list[tuple[str, str]] = []

    def stop(self, app: str) -> None:
        self.calls.append(("stop", app))
        super().stop(app)

    def start(self, app: str) -> None:
        self.calls.append(("start", app))
        super().start(app)


def agent(tmp_path: Path) -> tuple[Operator, Watched]:
    layout = Layout(tmp_path)
    layout.make()
    supervisor = Watched(layout)
    return Operator(CommandBook(layout.state_dir / "commands.json"), supervisor), supervisor


def never_busy(_app: str) -> bool:
    return False


def test_a_command_delivered_again_after_a_restart_is_acked_again_not_run_again(
    tmp_path: Path,
) -> None:
    operator, supervisor = agent(tmp_path)
    restart = Command(id=7, action="restart", app="web")
    operator.carry_out([restart], ["web", "db"], never_busy)
    operator.tick()
    assert supervisor.calls == [("stop", "web"), ("start", "web")]
    [ack] = operator.book.acks(10)
    assert (ack.id, ack.state) == (7, CommandOutcome.DONE)

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


def test_a_damaged_book_starts_empty(tmp_path: Path) -> None:
    operator, _ = agent(tmp_path)
    operator.carry_out([Command(id=1, action="stop")], ["web"], never_busy)
    path = tmp_path / "state" / "commands.json"
    path.write_bytes(path.read_bytes().replace(b"web", b"wex"))
    book = CommandBook(path)
    assert (book.done, book.stopped) == ({}, set())
