"""Pins and floors as the server applies them: resolved per group plan, checked when set.

The pure rules are `policy.pins`; this module reads what they need (a group's pins, the
versions on each pinned channel, the app's floors) and says what each (group, app) should
run instead of its channel's newest. Only pairs with a pin or an app floor are read and
returned, so groups with neither cost nothing more.
"""

from dataclasses import dataclass

from uptend.errors import ConfigError, NotFoundError
from uptend.policy.pins import Resolved, below, floor_of, matching, resolve
from uptend.server.storage import pins as rows
from uptend.server.storage.pins import Conn


@dataclass(frozen=True, slots=True)
class PinPlan:
    """What a pin (or the floor) makes one group's agents run for one app."""

    resolved: Resolved
    target: str | None  # the signed target of resolved.version
    pin: str | None  # the group's pin spec, if any
    floor: str | None  # the app's floor, if any


async def resolutions(conn: Conn, group: str | None = None) -> dict[tuple[str, str], PinPlan]:
    """(group, app) -> its PinPlan, for the assignments a pin or a floor changes."""
    assigned = await rows.assignments(conn, group)
    pins = await rows.pins_of(conn, group)
    floors = await rows.floors(conn, sorted({a for _, a, _, _ in assigned}))
    relevant = [(g, a, c) for g, a, c, _ in assigned if (g, a) in pins or a in floors]
    versions = await rows.versions_on(conn, sorted({(a, c) for _, a, c in relevant}))
    out: dict[tuple[str, str], PinPlan] = {}
    for g, a, c in relevant:
        on_channel = versions[a, c]
        floor = floor_of(floors.get(a, []))
        pin = pins.get((g, a))
        resolved = resolve(pin, list(on_channel), floor)
        if resolved is not None:
            target = on_channel.get(resolved.version) if resolved.version else None
            out[g, a] = PinPlan(resolved, target, pin, floor)
    return out


async def check_pin(conn: Conn, app: str, channel: str, spec: str) -> str:
    """The release `spec` names on the channel now.

    Raises:
        NotFoundError: no release on the channel matches `spec`.
        ConfigError: it names a release below the app's floor.
    """
    on_channel = (await rows.versions_on(conn, [(app, channel)]))[app, channel]
    version = matching(spec, list(on_channel))
    if version is None:
        raise NotFoundError(
            f"no release of {app} on channel {channel} matches the pin {spec}",
            hint=f"see the releases with `uptend release list {app}`",
        )
    floor = floor_of((await rows.floors(conn, [app])).get(app, []))
    if below(version, floor):
        raise ConfigError(
            f"the pin {spec} names {app} {version}, below its floor {floor}",
            hint=f"pin {floor} or a newer release: nothing below a floor is installed any more",
        )
    return version
