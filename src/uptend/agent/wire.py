"""The agent's half of the agent API: dataclasses and strict JSON, no pydantic.

The pydantic models in `protocol/agent_api.py` are the source of truth (the server validates
with them); these mirror them field for field, and tests/agent/test_wire.py holds the two to
the same names, types, defaults and optionality, and round-trips every message both ways
(keyword-only, in the models' field order). They exist so that the resident agent does not
carry pydantic (~8 MB of an idle agent).

What the server sends is hostile input: `decode` checks every type, ignores unknown keys
(as the models do) and bounds every size; anything else is a `WireError`, which the control
client turns into a TransientError. What the agent sends must fit the server's bounds
(`protocol.limits`): `clean` makes free text fit. Pure: no I/O.
"""

import dataclasses
import json
import math
import re
import types
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from uptend.protocol import limits

MAX_BODY_BYTES = limits.MAX_BODY_BYTES  # a check-in answer for thousands of apps fits easily
MAX_ITEMS = 10_000  # per list
MAX_TEXT = 64 << 10  # per string
MAX_INT = limits.MAX_INT
MAX_POLL_S = limits.MAX_POLL_S

T = TypeVar("T")
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")  # in a str, any surrogate is a lone one


class WireError(ValueError):
    """A message that does not match its schema; says where."""


class AppState(StrEnum):
    """What an agent reports about one app (protocol.AppState's values)."""

    PENDING = "pending"
    RUNNING = "running"
    UPDATING = "updating"
    DEFERRED = "deferred"
    FAILED = "failed"
    STOPPED = "stopped"


class Outcome(StrEnum):
    """The outcome of one update attempt (protocol.Outcome's values)."""

    INSTALLED = "installed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    REFUSED = "refused"
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollRequest:
    token: str
    name: str
    group: str = "default"
    labels: list[str] = field(default_factory=list)  # KEY=VALUE each (protocol.labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollResponse:
    agent_id: str
    credential: str
    root: str
    metadata_url: str
    targets_url: str
    poll_interval_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStatus:
    app: str
    version: str | None = None
    state: AppState = AppState.PENDING
    target: str | None = None
    reason: str = ""
    phase: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    probation_left_s: float | None = None
    restarts: int = 0
    config_version: int | None = None
    config_bad: int | None = None
    kind: str | None = None  # protocol/packages.py bounds these four
    package: str | None = None
    package_expected: str | None = None
    package_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    app: str
    version: str
    outcome: Outcome
    reason: str = ""
    log_tail: str = ""
    at: datetime


MAX_WAIT_S = 55.0


class CommandOutcome(StrEnum):
    """What became of a command (protocol.CommandOutcome's values)."""

    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAck:
    id: int
    state: CommandOutcome
    result: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckIn:
    agent_version: str
    apps: list[AppStatus] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    generation: int | None = None
    valid_until: datetime | None = None
    acks: list[CommandAck] = field(default_factory=list)
    settings_version: int | None = None  # the agent's own signed settings applied here
    settings_bad: int | None = None  # the newest settings version refused or rolled back


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDirective:
    app: str
    version: str | None
    pinned: bool = False
    target: str | None = None
    reason: str = ""
    critical: bool = False
    hold: str | None = None  # a reason code: stage, but install nothing now
    hold_until: datetime | None = None
    config_version: int | None = None  # the signed config to run with (`agent/configplan.py`)
    config_target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    id: int
    action: str
    app: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Directives:
    poll_interval_s: float
    apps: list[AppDirective] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    generation: int | None = None
    unchanged: bool = False
    credential: str | None = None  # a rotated credential: store it, then use it
    valid_until: datetime | None = None
    commands: list[Command] = field(default_factory=list)
    settings_version: int | None = None  # the agent's own signed settings (settingskeeper.py)
    settings_target: str | None = None
    retry_after_s: float | None = None  # the server is busy: the least wait before the next

    def __post_init__(self) -> None:
        if not 0 < self.poll_interval_s <= MAX_POLL_S:  # 0 would spin the agent
            raise WireError(f"poll_interval_s: {self.poll_interval_s} is not in (0, {MAX_POLL_S}]")
        # 0 asks no wait beyond the poll (unlike a poll interval of 0, it cannot spin)
        if self.retry_after_s is not None and not 0 <= self.retry_after_s <= MAX_POLL_S:
            raise WireError(f"retry_after_s: {self.retry_after_s} is not in [0, {MAX_POLL_S}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitRequest:
    generation: int | None = None
    wait_s: float = MAX_WAIT_S


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitAnswer:
    ring: bool


MESSAGES = (
    EnrollRequest,
    EnrollResponse,
    AppStatus,
    Report,
    CommandAck,
    CheckIn,
    AppDirective,
    Command,
    Directives,
    WaitRequest,
    WaitAnswer,
)


def encode(message: object) -> bytes:
    """The JSON of a message, as the server's models read it.

    UTF-8 rather than JSON escapes (a log tail of CJK text is a third of the bytes); a lone
    surrogate, which UTF-8 cannot hold, is written as the same escape `ensure_ascii` makes.
    """
    text = json.dumps(_plain(message), separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def clean(text: str, limit: int, *, keep_end: bool = False) -> str:
    """`text` as the server accepts free text: no NUL or lone surrogate, `limit` characters.

    Each NUL or lone surrogate becomes U+FFFD; a longer text keeps its first characters, or
    with `keep_end` its last ones.
    """
    if len(text) > limit:
        text = text[-limit:] if keep_end else text[:limit]
    if "\x00" in text or not text.isascii():
        text = _UNSENDABLE.sub("\ufffd", text)
    return text


def decode(cls: type[T], body: bytes) -> T:
    """Parse and check one message of type `cls`; raise WireError if it is not one."""
    if len(body) > MAX_BODY_BYTES:
        raise WireError(f"{len(body)} bytes is over the limit of {MAX_BODY_BYTES}")
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, nested too deep
        raise WireError(f"not JSON: {e}") from None
    return from_json(cls, raw)


def from_json(cls: type[T], raw: Any) -> T:
    """Check an already parsed JSON value against message type `cls`."""
    value: T = _value(cls, raw, getattr(cls, "__name__", "message"))
    return value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value  # str (StrEnum included), int, float, bool, None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _value(tp: Any, raw: Any, where: str) -> Any:  # one case per type
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # X | None, the only unions on the wire
        (inner,) = (a for a in get_args(tp) if a is not type(None))
        return None if raw is None else _value(inner, raw, where)
    if origin is list:
        if not isinstance(raw, list):
            raise WireError(f"{where}: expected a list")
        if len(raw) > MAX_ITEMS:
            raise WireError(f"{where}: {len(raw)} items is over the limit of {MAX_ITEMS}")
        (item,) = get_args(tp)
        return [_value(item, r, f"{where}[{i}]") for i, r in enumerate(raw)]
    if tp is bool:
        if isinstance(raw, bool):
            return raw
    elif tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            if abs(raw) > MAX_INT:
                raise WireError(f"{where}: {raw} is out of range")
            return raw
    elif tp is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if not math.isfinite(raw):
                raise WireError(f"{where}: {raw} is not finite")
            return float(raw)
    elif tp is str or (isinstance(tp, type) and issubclass(tp, StrEnum)):
        if isinstance(raw, str):
            if len(raw) > MAX_TEXT:
                raise WireError(f"{where}: {len(raw)} characters is over the limit of {MAX_TEXT}")
            try:
                return tp(raw)  # a StrEnum refuses a value it does not name
            except ValueError:
                raise WireError(f"{where}: {raw!r} is not a {tp.__name__}") from None
    elif tp is datetime:
        if isinstance(raw, str) and len(raw) <= 64:
            try:
                return datetime.fromisoformat(raw)
            except ValueError:
                pass
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object(tp, raw, where)
    raise WireError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {type(raw).__name__}")


def _object(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise WireError(f"{where}: expected an object")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _value(hints[f.name], raw[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise WireError(f"{where}: {f.name} is missing")
    return cls(**values)
