"""The long-lived agent: `python -m uptend.agent.resident DIR [--once] [--keep-apps-on-exit]`.

`uptend agent run` parses its options with typer and then execs this module in the same
process (same pid: signals, pid files and service managers see one agent), so that the CLI
stack (typer, rich, and the pydantic typer brings) never stays resident. It imports the
standard library and the agent's own modules only; tests/test_cli_startup.py checks which.
"""

import argparse
import io
import logging
import logging.handlers
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

from uptend.agent import files, selfupdate
from uptend.agent.layout import Layout
from uptend.agent.runner import Agent
from uptend.errors import UptendError


class _PrivateLog(logging.handlers.RotatingFileHandler):
    """Each agent.log (the first and every one after a rollover) is created 0600."""

    def _open(self) -> io.TextIOWrapper:
        # mode "a": what a size-rotating handler always opens with
        return open(self.baseFilename, "a", encoding=self.encoding, opener=files.private_opener)


def _setup_logging(data_dir: Path) -> None:
    layout = Layout(data_dir)
    layout.make()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    rotating = _PrivateLog(layout.logs_dir / "agent.log", maxBytes=5 << 20, backupCount=5)
    root = logging.getLogger("uptend")
    root.setLevel(logging.INFO)
    for handler in (stderr, rotating):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def run(data_dir: Path, *, once: bool = False, keep_apps_on_exit: bool = False) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (or one cycle with `once`)."""
    _setup_logging(data_dir)
    agent = Agent(Layout(data_dir))

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if keep_apps_on_exit:
        agent.config = replace(agent.config, keep_apps_on_exit=True)
    agent.run(once=once)
    if selfupdate.handover() is not None and agent.host.prefix is not None:
        # the lock is released and the apps are left running: the launcher starts the new
        # version in this same process, which adopts them (docs/architecture.md)
        argv = ["--keep-apps-on-exit"] * keep_apps_on_exit + ["--once"] * once
        selfupdate.exec_launcher(agent.host.prefix, argv)


def main(argv: list[str] | None = None) -> int:
    """Expected errors print as the CLI prints them (one line and a hint) and set the exit code."""
    parser = argparse.ArgumentParser(
        prog="uptend agent run", description="the resident agent (use `uptend agent run`)"
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--keep-apps-on-exit", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.data_dir, once=args.once, keep_apps_on_exit=args.keep_apps_on_exit)
    except UptendError as e:
        sys.stderr.write(f"error: {e.message}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
