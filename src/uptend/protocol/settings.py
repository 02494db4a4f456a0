"""The agent's own settings, set remotely with `uptend config set uptend-agent FILE`.

The document is a JSON object naming only the settings below; every one is optional (a
setting left out keeps the value in the agent's agent.json, or the group's poll interval).
The server checks a document with `parse` before it signs it, and the agent checks the
signed bytes with the same function before it applies them, so a document the agent would
refuse is never signed. Pure and standard library only: the resident agent imports it.

    {"poll_interval_s": 30, "log_level": "debug", "check_disk": false,
     "precondition_commands": [["/usr/local/bin/ok-to-update"]],
     "server": "https://uptend.example.com/"}

`server` moves the agent's check-ins (and long-polls) to another address of the control
plane, e.g. behind a new load balancer; the TUF metadata and targets URLs stay those of
enrollment. A setting that leaves the agent unable to check in is rolled back by the agent
(docs/config.md).
"""

import json
import math
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from uptend.errors import ConfigError
from uptend.protocol import limits

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_COMMANDS = 16  # precondition commands
MAX_ARGS = 64  # arguments of one precondition command
MAX_ARG = 1024  # characters of one argument
MAX_URL = 512  # characters of `server`


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What a signed settings document sets (None: not set, the local value holds)."""

    poll_interval_s: float | None = None  # replaces the group's poll interval
    log_level: str | None = None  # one of LOG_LEVELS
    precondition_commands: tuple[tuple[str, ...], ...] | None = None
    check_reboot: bool | None = None
    check_disk: bool | None = None
    server: str | None = None  # the control plane's URL, http:// or https://


NAMES = tuple(f.name for f in fields(AgentSettings))
_HINT = f"a JSON object with any of: {', '.join(NAMES)} (docs/config.md)"


def parse(content: str | bytes) -> AgentSettings:
    """The settings `content` sets; ConfigError naming the first thing wrong with it."""
    try:
        raw: Any = json.loads(content)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"the agent settings are not JSON: {e}", hint=_HINT) from None
    if not isinstance(raw, dict):
        raise ConfigError("the agent settings are not a JSON object", hint=_HINT)
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise ConfigError(f"unknown agent setting {unknown[0]!r}", hint=_HINT)
    return AgentSettings(
        poll_interval_s=_poll(raw.get("poll_interval_s")),
        log_level=_level(raw.get("log_level")),
        precondition_commands=_commands(raw.get("precondition_commands")),
        check_reboot=_flag("check_reboot", raw.get("check_reboot")),
        check_disk=_flag("check_disk", raw.get("check_disk")),
        server=_server(raw.get("server")),
    )


def _bad(name: str, what: str) -> ConfigError:
    return ConfigError(f"agent setting {name}: {what}", hint=_HINT)


def _poll(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad("poll_interval_s", "expected a number of seconds")
    if not (math.isfinite(value) and 0 < value <= limits.MAX_POLL_S):
        raise _bad("poll_interval_s", f"{value} is not in (0, {limits.MAX_POLL_S:g}]")
    return float(value)


def _level(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise _bad("log_level", f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def _flag(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _bad(name, "expected true or false")


def _commands(value: object) -> tuple[tuple[str, ...], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_COMMANDS:
        raise _bad("precondition_commands", f"expected a list of at most {MAX_COMMANDS} argv")
    out = []
    for argv in value:
        if (
            not isinstance(argv, list)
            or not 0 < len(argv) <= MAX_ARGS
            or not all(isinstance(a, str) and 0 < len(a) <= MAX_ARG for a in argv)
            or any("\x00" in a for a in argv)
        ):
            raise _bad("precondition_commands", f"{argv!r} is not a command's argv")
        out.append(tuple(argv))
    return tuple(out)


def _server(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise _bad("server", "expected a URL")
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise _bad("server", f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/") + "/"
