"""Which version of an app an agent should run: counts and settings in, a decision out.

Pure: no database, no clock. The server feeds it what it read and sends the result as a
directive; `fleet list` shows the same reason, so the operator sees why a host is where it is.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from uptend.protocol.versions import newest


@dataclass(frozen=True, slots=True)
class Decision:
    version: str | None  # None: nothing to run yet
    reason: str


def desired_version(
    *,
    app: str,
    channel: str,
    group: str,
    releases: Sequence[str],
    installed: str | None,
    auto_update: bool,
) -> Decision:
    """Decide the version `app` should run on one agent.

    Args:
        app: the app's name.
        channel: the channel the agent's group follows for this app.
        group: the agent's group (named in reasons).
        releases: every version published on that channel.
        installed: the version the agent runs now, if any.
        auto_update: the group's switch; off means "install once, then stay".
    """
    latest = newest(list(releases))
    if latest is None:
        return Decision(installed, f"no release of {app} on channel {channel} yet")
    if installed is not None and not auto_update:
        if installed == latest:
            return Decision(installed, f"newest on channel {channel}")
        return Decision(
            installed,
            f"automatic updates are off for group {group} ({latest} is available)",
        )
    return Decision(latest, f"newest on channel {channel}")


def is_outdated(installed: str | None, newest_available: str | None) -> bool:
    """An agent is outdated for an app when it does not run the newest release it could."""
    return newest_available is not None and installed != newest_available
