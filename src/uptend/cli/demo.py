"""`uptend demo`: a server, three agents, v1 then v2 of a sample app, watched live.

Everything runs from a temporary directory on the embedded default (SQLite, local dirs)
and every process it starts is stopped before it returns.
"""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from uptend.cli._client import Admin
from uptend.cli._output import console
from uptend.cli.release import upload_release
from uptend.errors import TransientError, UptendError
from uptend.protocol import GroupSet

app = typer.Typer(add_completion=False)  # the root command owns shell completion

SAMPLE = Path(__file__).resolve().parent.parent / "demo_app"
AGENTS = 3
TIMEOUT_S = 90.0


def sample_release(where: Path, version: str) -> Path:
    """The sample app with VERSION set to `version`."""
    out = where / f"demo-{version}"
    shutil.copytree(SAMPLE, out, ignore=shutil.ignore_patterns("__pycache__"))
    code = (out / "app.py").read_text().replace('VERSION = "1.0"', f'VERSION = "{version}"')
    (out / "app.py").write_text(code)
    return out


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "uptend", *argv],
            stdout=subprocess.PIPE if argv[:2] == ["server", "run"] else out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        stop(proc)


def app_says(agent_dir: Path) -> str:
    """The version the sample app itself reports (proof the new code really runs)."""
    try:
        return str(json.loads((agent_dir / "apps/demo/state/running.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "-"


def view(agents: list[dict[str, Any]], dirs: dict[str, Path], note: str) -> Table:
    table = Table("agent", "installed", "desired", "state", "app says", title=note)
    for a in agents:
        demo = next((x for x in a["apps"] if x["app"] == "demo"), None)
        table.add_row(
            a["name"],
            (demo or {}).get("installed") or "-",
            (demo or {}).get("desired") or "-",
            (demo or {}).get("state", "-"),
            app_says(dirs[a["name"]]),
        )
    return table


def on_version(admin: Admin, dirs: dict[str, Path], version: str) -> tuple[bool, list[Any]]:
    agents = admin.agents(limit=1000).model_dump(mode="json")["agents"]
    done = len(agents) == len(dirs) and all(
        any(
            x["app"] == "demo" and x["installed"] == version and x["state"] == "running"
            for x in a["apps"]
        )
        and app_says(dirs[a["name"]]) == version
        for a in agents
    )
    return done, agents


def wait_for(
    admin: Admin, dirs: dict[str, Path], version: str, live: Live | None, note: str
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT_S:
        try:
            done, agents = on_version(admin, dirs, version)
        except TransientError:
            done, agents = False, []
        if live is not None:
            live.update(view(agents, dirs, note))
        if done:
            return time.monotonic() - started
        time.sleep(0.2)
    raise UptendError(
        f"the agents did not all reach {version} within {TIMEOUT_S:g}s",
        hint="see the logs printed above",
    )


@app.command(epilog="Example: uptend demo --ci")
def demo(
    ci: Annotated[
        bool, typer.Option("--ci", help="no live table; exit 0 only if all reach v2")
    ] = False,
) -> None:
    """Start a server and 3 agents, publish v1 then v2 of a sample app, watch them move."""
    from uptend.agent.config import enroll
    from uptend.agent.layout import Layout
    from uptend.server.services.setup import init_data_dir
    from uptend.server.settings import Settings

    say = console.print
    work = Path(tempfile.mkdtemp(prefix="uptend-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with ExitStack() as stack:
            stack.callback(stop_all, procs)
            say(f"[bold]uptend demo[/] in {work}")
            init = init_data_dir(Settings(data_dir=work / "server"))
            server = start(
                ["server", "run", str(work / "server"), "--port", "0"], work / "server.log"
            )
            procs.append(server)
            assert server.stdout is not None
            line = server.stdout.readline().decode().strip()
            if not line.startswith("listening on "):
                raise UptendError("the server did not start", hint=f"see {work / 'server.log'}")
            url = line.removeprefix("listening on ")
            say(f"server up at {url}")
            admin = Admin(url, init.admin_token)
            admin.set_group("default", GroupSet(app="demo", channel="stable", poll_interval_s=1))
            upload_release(
                admin, "demo", "1.0", sample_release(work, "1.0"), "stable", show_progress=False
            )
            say("published demo 1.0")
            dirs: dict[str, Path] = {}
            for i in range(1, AGENTS + 1):
                name = f"host-{i}"
                dirs[name] = work / name
                enroll(Layout(dirs[name]), url, init.enroll_token, name, "default")
                procs.append(start(["agent", "run", str(dirs[name])], work / f"{name}.log"))
            say(f"started {AGENTS} agents")
            with ExitStack() as live_stack:
                live = None if ci else live_stack.enter_context(Live(console=console))
                took = wait_for(admin, dirs, "1.0", live, "installing demo 1.0")
                say(f"all agents run demo 1.0 ({took:.1f}s)")
                upload_release(
                    admin, "demo", "2.0", sample_release(work, "2.0"), "stable", show_progress=False
                )
                say("published demo 2.0")
                took = wait_for(admin, dirs, "2.0", live, "updating to demo 2.0")
            say(f"\n[green]all {AGENTS} agents run demo 2.0[/], {took:.1f}s after publishing")
            console.print(view(on_version(admin, dirs, "2.0")[1], dirs, "final state"))
    except UptendError:
        for log in sorted(work.glob("*.log")):
            sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("stopped every process; removed the demo directory")
