"""What the agent sends fits the server's bounds, whatever its apps, logs and clock did.

A check-in the server refused would be refused at every retry: the agent cleans and cuts
text, clamps times, and drops what cannot be sent, and each result validates on the server's
own models here.
"""

from datetime import UTC, datetime

import pytest

from uptend.agent import machine, wire
from uptend.agent.status import app_status, fit, report_of
from uptend.protocol import agent_api, limits

HOSTILE = "boom\x00 \udcff" + "é" * (2 * limits.MAX_LOG_TAIL)


def validates(message: object, model: type[agent_api.Report] | type[agent_api.AppStatus]) -> None:
    model.model_validate_json(wire.encode(message))


def test_a_report_with_nul_surrogates_and_a_huge_log_is_made_to_fit() -> None:
    pending = machine.Pending("failed", "2.0", HOSTILE, HOSTILE + "the end", 1e9)
    report = report_of("demo", pending)
    assert report is not None
    validates(report, agent_api.Report)
    assert report.reason.startswith("boom\ufffd \ufffd")
    assert len(report.reason) == limits.MAX_REASON
    assert report.log_tail.endswith("the end")  # a log keeps its last lines
    assert len(report.log_tail) == limits.MAX_LOG_TAIL


@pytest.mark.parametrize(
    "at",
    [
        datetime(1969, 12, 31, tzinfo=UTC),
        datetime(1, 1, 1),  # noqa: DTZ001 - a legacy report may be naive
        datetime(9999, 12, 31, 23, 59),  # noqa: DTZ001
    ],
)
def test_a_time_out_of_the_servers_years_is_clamped(at: datetime) -> None:
    legacy = wire.Report(app="demo", version="1.0", outcome=wire.Outcome.FAILED, at=at)
    report = fit(legacy)
    assert report is not None
    validates(report, agent_api.Report)
    assert limits.MIN_YEAR <= report.at.year <= limits.MAX_YEAR


def test_a_report_that_cannot_be_sent_is_dropped() -> None:
    assert report_of("demo", machine.Pending("exploded", "1.0", "", "", 1e9)) is None
    assert report_of("demo", machine.Pending("failed", "not a version", "", "", 1e9)) is None


def test_an_app_state_with_a_hostile_reason_is_made_to_fit() -> None:
    plan = machine.Plan(current="1.0", phase=machine.Phase.FETCHING, target="2.0", failure=HOSTILE)
    status = app_status("demo", plan, "1.0", True, (None, None, None), "")
    validates(status, agent_api.AppStatus)
    assert len(status.reason) == limits.MAX_REASON


def test_the_json_is_utf_8_and_a_lone_surrogate_is_escaped() -> None:
    sent = wire.encode(wire.EnrollRequest(token="t", name="é\udcff"))  # noqa: S106
    assert sent == b'{"token":"t","name":"\xc3\xa9\\udcff","group":"default","labels":[]}'
    assert wire.decode(wire.EnrollRequest, sent).name == "é\udcff"
