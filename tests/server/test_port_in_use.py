"""`uptend server run` on a port something else holds: one line, exit 6, database untouched.

The port is held by a real socket of the test: listening with SO_REUSEADDR, like another
server, or only bound, without it (a client's or a half-started server's port). The server is
pointed at a database that does not exist yet (a new SQLite file; a fresh, empty PostgreSQL
database), so "the migrations did not run" is visible: no file, no table.
"""

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.support.fleet import UPTEND
from tests.support.pg import fresh_database


@pytest.fixture(params=["listening", "bound"])
def taken_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with socket.socket() as sock:
        if request.param == "listening":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        if request.param == "listening":
            sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("port") / "srv"
    subprocess.run([*UPTEND, "server", "init", str(data)], check=True, capture_output=True)
    return data


def run_on(data: Path, port: int, database_url: str) -> subprocess.CompletedProcess[str]:
    argv = [*UPTEND, "server", "run", str(data), "--port", str(port)]
    return subprocess.run(
        [*argv, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_naming_the_port(done: subprocess.CompletedProcess[str], port: int) -> None:
    output = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 6, output
    assert done.stdout == "", output  # it never said it listens
    (line,) = done.stderr.splitlines()
    assert line == (
        f"error: port {port} on 127.0.0.1 is already in use: stop what listens there "
        "or pick another port with --port"
    ), output


def test_a_port_in_use_leaves_a_new_sqlite_database_uncreated(
    data_dir: Path, taken_port: int, tmp_path: Path
) -> None:
    database = tmp_path / "new.db"
    done = run_on(data_dir, taken_port, f"sqlite:///{database}")
    assert_one_line_naming_the_port(done, taken_port)
    assert not database.exists()


def test_a_port_in_use_leaves_a_postgresql_database_unmigrated(
    data_dir: Path, taken_port: int
) -> None:
    with fresh_database() as url:
        done = run_on(data_dir, taken_port, url)
        assert_one_line_naming_the_port(done, taken_port)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert inspect(conn).get_table_names() == []  # not even alembic_version
        finally:
            engine.dispose()
