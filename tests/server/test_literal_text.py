"""Text from agents reaches the operator's terminal as text, never as markup or escapes.

Agents are enrolled against a real server (SQLite and PostgreSQL) with reasons and log
tails built to attack a terminal; their names and versions, which the server now refuses in
such forms, are then set to hostile ones in the database itself (a row from before the
bounds, or a database someone else writes to), since the CLI must not trust even those.
The attacks: rich markup (`[/]` used to crash `fleet list` with a MarkupError, `[link=…]`
made a clickable link), an OSC sequence that sets the window title, CSI and 8-bit (0x9b)
controls, a newline that forges a table row, a bidi override that reverses what follows. The
CLI runs as a real process on a forced colour terminal (so rich emits its own styles and
would emit links), and the test checks its real output: after taking out rich's own colour
codes nothing is left that a terminal would act on, each agent is one row, and each hostile
string shows once, escaped. `--json` stays the exact data.
"""

import json
import re
import subprocess
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from tests.server.test_agent_api import admin_client, check_in, enrolled, fleet_on
from tests.support.fleet import UPTEND, Fleet
from uptend.cli._output import escaped, escaped_lines

OSC_TITLE = "\x1b]0;pwned\x07"
# name -> (installed version, reason, log tail of its report)
HOSTILE: dict[str, tuple[str, str, str]] = {
    "lt-[/]x": ("1.0", "[/]", ""),
    "lt-[link=https://evil.example]click[/link]": ("1.0", "[link=https://evil.example]x", ""),
    f"lt-title{OSC_TITLE}": (f"1.0{OSC_TITLE}", f"boom {OSC_TITLE}", f"line 1\n{OSC_TITLE}"),
    "lt-row\nlt-forged  default  2026-01-01": ("1.0\n2.0", "one\ntwo", "a\r\nb\x1b[2J\n"),
    "lt-bidi\u202eevil": ("1.0\u2066", "\u202e\u2028x", "\x9b31m c1 csi"),
    "lt-tab\tbell\x07del\x7f": ("1.0\x1b[31m", "tab\there", ""),
}
APP = "lt-app"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours, and nothing else
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """A server whose only agents are the hostile ones, each checked in with a failure."""
    with fleet_on(request.param, tmp_path_factory.mktemp("literal")) as fleet:
        with admin_client(fleet) as http:  # agents report only apps their group runs
            http.put("/api/v1/groups/default", json={"app": APP}).raise_for_status()
        for i, (name, (version, reason, tail)) in enumerate(HOSTILE.items()):
            credential = enrolled(fleet, f"lt-seed-{i}")
            status = {"app": APP, "version": "1.0", "state": "failed", "reason": reason}
            report = {
                "app": APP,
                "version": "1.0",
                "outcome": "failed",
                "reason": reason,
                "log_tail": tail,
                "at": datetime.now(UTC).isoformat(),
            }
            answer = check_in(fleet, credential, [status], reports=[report])
            assert answer.status_code == 200, answer.text
            hostile_rows(fleet, f"lt-seed-{i}", name, version)
        yield fleet


def hostile_rows(fleet: Fleet, seed: str, name: str, version: str) -> None:
    """Give agent `seed` the hostile `name` and installed/reported `version`, in SQL."""
    url = fleet.database_url or f"sqlite:///{fleet.server_dir / 'uptend.db'}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as db:
            (agent_id,) = db.execute(text("SELECT id FROM agents WHERE name = :n"), {"n": seed})
            params = {"id": agent_id[0], "name": name, "v": version}
            db.execute(text("UPDATE agents SET name = :name WHERE id = :id"), params)
            db.execute(text("UPDATE agent_apps SET installed = :v WHERE agent_id = :id"), params)
            db.execute(text("UPDATE reports SET version = :v WHERE agent_id = :id"), params)
    finally:
        engine.dispose()


def terminal(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on a wide colour terminal: rich emits styles (and links, if markup made any)."""
    env = {
        **fleet.env(),
        "COLUMNS": "400",
        "FORCE_COLOR": "1",
        "TTY_COMPATIBLE": "1",
        "TERM": "xterm-256color",
    }
    return subprocess.run([*UPTEND, *args], capture_output=True, text=True, env=env, check=False)


def inert(output: str) -> str:
    """`output` without rich's own SGR colours; fails if anything else could drive a terminal."""
    plain = SGR.sub("", output)
    bad = {ch for ch in plain if ch != "\n" and unicodedata.category(ch) in UNSAFE}
    assert not bad, f"terminal controls reached the output: {bad!r}\n{output!r}"
    return plain


def rows(table: str) -> list[str]:
    """The body rows of a rich table (heavy head rules use ┃, body rows │)."""
    return [line for line in table.splitlines() if line.startswith("│")]


def test_fleet_list_shows_each_hostile_agent_on_one_row_escaped(server: Fleet) -> None:
    done = terminal(server, "fleet", "list", "--app", APP)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    table = inert(done.stdout)
    body = rows(table)
    assert len(body) == len(HOSTILE), table  # a newline in a name forges no row
    for name, (version, reason, _tail) in HOSTILE.items():
        row = [line for line in body if line.startswith(f"│ {escaped(name)} ")]
        assert len(row) == 1, (name, table)
        assert escaped(version) in row[0]
        assert f"failed: {escaped(reason)}" in row[0]
    assert "[link=https://evil.example]click[/link]" in table  # shown, not made a link
    assert "lt-title\\x1b]0;pwned\\x07" in table
    assert "lt-row\\nlt-forged" in table
    assert "lt-bidi\\u202eevil" in table
    assert "lt-tab\\tbell\\x07del\\x7f" in table


def test_fleet_list_json_is_the_exact_data(server: Fleet) -> None:
    page = server.json("fleet", "list", "--app", APP, "--limit", "1000")
    got = {a["name"]: a["apps"] for a in page["agents"]}
    assert set(got) == set(HOSTILE)
    for name, (version, reason, _tail) in HOSTILE.items():
        (app,) = [a for a in got[name] if a["app"] == APP]
        assert app["installed"] == version
        assert app["reason"]["message"] == reason


def agent_id(fleet: Fleet, name: str) -> str:
    """The id of agent `name` (a name with a newline cannot be routed as a path segment)."""
    page = fleet.json("fleet", "list", "--app", APP, "--limit", "1000")
    (found,) = [a["id"] for a in page["agents"] if a["name"] == name]
    return str(found)


def test_fleet_show_prints_the_report_and_its_log_tail_line_by_line(server: Fleet) -> None:
    name = "lt-row\nlt-forged  default  2026-01-01"
    version, reason, tail = HOSTILE[name]
    done = terminal(server, "fleet", "show", "--id", agent_id(server, name))
    assert done.returncode == 0, done.stderr
    out = inert(done.stdout)
    assert len(rows(out)) == 1, out
    lines = out.splitlines()
    report = [line for line in lines if f"{APP} {escaped(version)}: failed" in line]
    assert len(report) == 1, out
    assert report[0].endswith(f"failed {escaped(reason)}"), out
    after = lines[lines.index(report[0]) + 1 :]
    assert after[:2] == ["a\\r", "b\\x1b[2J"], out  # \r could overwrite a line: escaped too

    data = json.loads(server.cli("fleet", "show", "--id", agent_id(server, name), "--json").stdout)
    assert data["agent"]["name"] == name
    assert [r["log_tail"] for r in data["reports"]] == [tail]


def test_fleet_show_of_a_title_setting_tail(server: Fleet) -> None:
    name = f"lt-title{OSC_TITLE}"
    out = inert(terminal(server, "fleet", "show", name).stdout)
    assert "line 1\n\\x1b]0;pwned\\x07\n" in out


def test_fleet_summary_escapes_reported_versions(server: Fleet) -> None:
    done = terminal(server, "fleet", "summary")
    assert done.returncode == 0, done.stderr
    out = inert(done.stdout)
    (row,) = [line for line in rows(out) if line.startswith(f"│ {APP} ")]
    for version, _reason, _tail in HOSTILE.values():
        assert escaped(version) in row


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_an_error_quoting_hostile_text_is_one_escaped_line(server: Fleet) -> None:
    """The server's 404 names the agent asked for; the error line must not obey it."""
    wanted = f"[link=https://evil.example]nobody[/link]{OSC_TITLE}[/]"
    done = terminal(server, "fleet", "show", wanted)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "MarkupError" not in done.stderr
    err = inert(done.stderr)
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert escaped(wanted) in error, err


@given(st.text())
def test_escaped_text_is_one_line_a_terminal_cannot_act_on(text: str) -> None:
    shown = escaped(text)
    assert "\n" not in shown
    assert not any(unicodedata.category(ch) in UNSAFE for ch in shown)
    if text.isprintable():
        assert shown == text  # printable text (any script, markup included) is left as it is


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\n")), min_size=1))
def test_escaped_lines_keeps_one_output_line_per_input_line(lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)  # as in a log: each line ends with \n
    assert escaped_lines(text) == [escaped(line) for line in lines]


def test_agent_enroll_status_and_log_print_their_text_literally(fleet: Fleet) -> None:
    """The agent's own commands, on the host: its name, and an attempt log on disk.

    The attempt log is written the way `AttemptLog` writes one, with text of the kind an
    installer's or a probe's output can carry into it.
    """
    where = fleet.root / "host"
    argv = ["agent", "enroll", str(where), "--server", fleet.url, "--token", fleet.enroll_token]
    refused = terminal(fleet, *argv, "--name", f"web-{OSC_TITLE}\u202e")  # the server says no
    assert refused.returncode != 0
    inert(refused.stderr)  # and says so without passing the controls on
    name = "web-[/][link=https://evil.example]x"  # markup is a valid name: shown as it is
    done = terminal(fleet, *argv, "--name", name)
    assert done.returncode == 0, done.stderr
    assert escaped(name) in inert(done.stdout)

    done = terminal(fleet, "agent", "status", str(where))
    assert done.returncode == 0, done.stderr
    assert f"agent {escaped(name)} (" in inert(done.stdout)

    attempt = where / "logs" / "updates" / "demo-20260101T000000.000000Z-2.0.log"
    attempt.write_text(f"t0 probe said: [red]{OSC_TITLE}\nt1 \x1b[2Jcleared\r\n")
    done = terminal(fleet, "agent", "log", str(where), "--app", "demo")
    assert done.returncode == 0, done.stderr
    lines = inert(done.stdout).splitlines()
    assert lines[-2:] == ["t0 probe said: [red]\\x1b]0;pwned\\x07", "t1 \\x1b[2Jcleared\\r"]
