"""The agent's wire dataclasses and the server's pydantic models agree on every message.

`protocol.agent_api` is the source of truth; `agent.wire` mirrors it so the resident agent
carries no pydantic. These tests hold the two to the same field names (in order), types,
defaults and optionality, and round-trip generated messages both ways through real JSON.
"""

import dataclasses
import enum
import json
import types
from datetime import UTC, datetime
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from uptend.agent import wire
from uptend.protocol import agent_api, limits, packages
from uptend.protocol.reasons import Outcome

PAIRS = [(cls, getattr(agent_api, cls.__name__)) for cls in wire.MESSAGES]
WIRE_OF = {model: cls for cls, model in PAIRS} | {
    agent_api.AppState: wire.AppState,
    Outcome: wire.Outcome,
    agent_api.CommandOutcome: wire.CommandOutcome,
}


def _bare(tp: Any) -> Any:
    """An annotation without its constraints (Annotated[str, ...] is a str on the wire)."""
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def _same_type(model_type: Any, wire_type: Any) -> bool:
    """The model's annotation and the dataclass's, with each model mapped to its mirror."""
    if get_origin(model_type) in (Union, types.UnionType):  # only X | None on the wire
        mapped = {WIRE_OF.get(_bare(a), _bare(a)) for a in get_args(model_type)}
        return get_origin(wire_type) in (Union, types.UnionType) and mapped == set(
            get_args(wire_type)
        )
    if get_origin(model_type) is list:
        return get_origin(wire_type) is list and _same_type(
            get_args(model_type)[0], get_args(wire_type)[0]
        )
    return WIRE_OF.get(model_type, model_type) is wire_type


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


@pytest.mark.parametrize(("cls", "model"), PAIRS, ids=[c.__name__ for c, _ in PAIRS])
def test_same_fields_types_defaults_and_optionality(cls: type, model: type[BaseModel]) -> None:
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == list(model.model_fields)
    hints = get_type_hints(cls)
    for f in fields:
        info = model.model_fields[f.name]
        assert _same_type(info.annotation, hints[f.name]), f.name
        has_default = _default(f) is not dataclasses.MISSING
        assert info.is_required() is not has_default, f.name
        if has_default:
            assert info.get_default(call_default_factory=True) == _default(f), f.name


@pytest.mark.parametrize(
    ("mirror", "enum"),
    [
        (wire.AppState, agent_api.AppState),
        (wire.Outcome, Outcome),
        (wire.CommandOutcome, agent_api.CommandOutcome),
    ],
)
def test_the_enums_are_the_same(mirror: type[enum.StrEnum], enum: type[enum.StrEnum]) -> None:
    assert [(s.name, s.value) for s in mirror] == [(s.name, s.value) for s in enum]


def test_every_agent_api_message_has_a_mirror() -> None:
    models = {
        name
        for name, obj in vars(agent_api).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == agent_api.__name__
        and not name.startswith("_")
    }
    assert models == {cls.__name__ for cls in wire.MESSAGES}


# -- generated messages, both ways ------------------------------------------------------------


# Fields an agent sends, drawn inside the server's bounds (protocol.limits): what the agent
# sends is made to fit them (agent.status), and tests/server/test_bounds.py attacks them.
NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_\-]{0,20}\Z")
VERSIONS = st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,3}(rc[0-9])?(\.post[0-9])?\Z")
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "app": NAMES,
    "group": NAMES,
    "version": VERSIONS,
    "target": VERSIONS,
    "token": st.from_regex(r"\A[!-~]{0,40}\Z"),
    "name": st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=30),
    "agent_version": st.from_regex(r"\A[0-9][0-9a-z.+]{0,20}\Z"),
    "phase": st.sampled_from(["fetching", "probation", "rolling_back"]),
    "reason": TEXT,
    "log_tail": TEXT,
    "result": TEXT,
    "wait_s": st.floats(min_value=0, max_value=wire.MAX_WAIT_S),
    "kind": st.from_regex(rf"\A{packages.KIND}\Z"),
    "package": st.from_regex(rf"\A{packages.NAME}\Z"),
    "package_expected": st.from_regex(rf"\A{packages.VERSION}\Z"),
    "package_version": st.from_regex(rf"\A{packages.FOUND}\Z"),
}
WIRE_MESSAGES = {
    wire.EnrollRequest,
    wire.AppStatus,
    wire.Report,
    wire.CheckIn,
    wire.CommandAck,
    wire.WaitRequest,
}


def _strategy(tp: Any, name: str = "", *, sent: bool = False) -> st.SearchStrategy[Any]:
    """Values of annotation `tp` inside the bounds `wire` checks (the server never exceeds them)
    and, where an agent `sent` it, inside the bounds the server checks."""
    tp = _bare(tp)
    if name == "labels":  # KEY=VALUE each (protocol.labels)
        return st.lists(st.from_regex(r"\A[a-z0-9][a-z0-9./-]{0,8}=[a-z0-9._-]{1,8}\Z"), max_size=3)
    if get_origin(tp) in (Union, types.UnionType):
        (inner,) = (a for a in get_args(tp) if a is not type(None))
        return st.none() | _strategy(inner, name, sent=sent)
    if get_origin(tp) is list:
        return st.lists(_strategy(get_args(tp)[0], sent=sent), max_size=3)
    if name == "poll_interval_s":
        return st.floats(min_value=1e-3, max_value=wire.MAX_POLL_S)
    if name == "retry_after_s":  # a wait, never negative; 0 is no wait
        return st.floats(min_value=0, max_value=wire.MAX_POLL_S)
    if sent and name in BY_NAME:
        return BY_NAME[name]
    if tp is bool:
        return st.booleans()
    if tp is int:
        low = 0 if sent else -wire.MAX_INT
        return st.integers(min_value=low, max_value=wire.MAX_INT)
    if tp is float:
        if sent:
            return st.floats(min_value=0, max_value=limits.MAX_SECONDS)
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        return st.text(max_size=30)
    if tp is datetime:
        zones: st.SearchStrategy[Any] = st.just(UTC) if sent else st.none() | st.just(UTC)
        return st.datetimes(  # hypothesis bounds are naive, its time zones apply to them
            min_value=datetime(limits.MIN_YEAR, 1, 2),  # noqa: DTZ001
            max_value=datetime(limits.MAX_YEAR, 12, 30),  # noqa: DTZ001
            timezones=zones,
        )
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        return st.sampled_from(list(tp))
    return _message(tp)


def _message(cls: type) -> st.SearchStrategy[Any]:
    if issubclass(cls, BaseModel):
        hints = {name: info.annotation for name, info in cls.model_fields.items()}
    else:
        hints = get_type_hints(cls, include_extras=True)
    sent = WIRE_OF.get(cls, cls) in WIRE_MESSAGES
    return st.builds(cls, **{name: _strategy(tp, name, sent=sent) for name, tp in hints.items()})


@pytest.mark.parametrize(("cls", "model"), PAIRS, ids=[c.__name__ for c, _ in PAIRS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_server_messages_survive_the_agent(
    cls: type, model: type[BaseModel], data: st.DataObject
) -> None:
    """pydantic -> JSON -> agent decode -> agent encode -> pydantic: the same message."""
    sent = data.draw(_message(model))
    seen: object = wire.decode(cls, sent.model_dump_json().encode())
    assert model.model_validate_json(wire.encode(seen)) == sent


@pytest.mark.parametrize(("cls", "model"), PAIRS, ids=[c.__name__ for c, _ in PAIRS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_agent_messages_validate_on_the_server(
    cls: type, model: type[BaseModel], data: st.DataObject
) -> None:
    """agent encode -> pydantic validate -> pydantic JSON -> agent decode: the same message."""
    sent = data.draw(_message(cls))
    received = model.model_validate_json(wire.encode(sent))
    assert wire.decode(cls, received.model_dump_json().encode()) == sent


def test_the_last_directives_file_reads_back_either_way() -> None:
    """state/directives.json written by an older (pydantic) agent, read by this one, and back."""
    old = agent_api.Directives(
        poll_interval_s=5,
        apps=[agent_api.AppDirective(app="demo", version="2.0", target="demo/2.0/demo-2.0.tar.gz")],
    )
    ours = wire.decode(
        wire.Directives, old.model_dump_json(exclude={"generation", "unchanged"}).encode()
    )
    assert ours.apps[0].target == "demo/2.0/demo-2.0.tar.gz"
    assert agent_api.Directives.model_validate_json(wire.encode(ours)) == old


# -- hostile answers -----------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "poll_interval_s": 5,
    "apps": [{"app": "demo", "version": "2.0"}],
    "retry": [],
}


def _with(**changes: Any) -> bytes:
    return json.dumps(GOOD | changes).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "expected an object"),
        (b"{}", "poll_interval_s is missing"),
        (_with(poll_interval_s="5"), "poll_interval_s: expected float"),
        (_with(poll_interval_s=True), "poll_interval_s: expected float"),
        (_with(poll_interval_s=0), "poll_interval_s: 0.0 is not in"),
        (_with(poll_interval_s=1e400), "not finite"),  # json reads 1e400 as inf
        (_with(poll_interval_s=-1), "is not in"),
        (_with(retry_after_s=-1), "retry_after_s: -1.0 is not in"),
        (_with(retry_after_s=1e9), "retry_after_s: 1000000000.0 is not in"),
        (_with(apps={"app": "demo"}), "apps: expected a list"),
        (_with(apps=[{"app": "demo"}]), "apps[0]: version is missing"),
        (_with(apps=[{"app": 7, "version": None}]), "apps[0].app: expected str"),
        (_with(apps=[{"app": "demo", "version": None, "pinned": 1}]), "pinned: expected bool"),
        (_with(apps=[{"app": "x" * (wire.MAX_TEXT + 1), "version": None}]), "over the limit"),
        (_with(retry=["demo"] * (wire.MAX_ITEMS + 1)), "items is over the limit"),
        (_with(generation=1 << 64), "generation: 18446744073709551616 is out of range"),
        (_with(generation="7"), "generation: expected int"),
        (_with(unchanged=None), "unchanged: expected bool"),
        (b" " * (wire.MAX_BODY_BYTES + 1), "over the limit"),
    ],
)
def test_a_hostile_answer_is_refused_with_where(body: bytes, says: str) -> None:
    with pytest.raises(wire.WireError) as e:
        wire.decode(wire.Directives, body)
    assert says in str(e.value)


def test_unknown_keys_are_ignored_like_the_models_do() -> None:
    body = _with(future={"x": 1}, apps=[{"app": "demo", "version": "2.0", "colour": "red"}])
    assert wire.decode(wire.Directives, body) == wire.Directives(
        poll_interval_s=5.0, apps=[wire.AppDirective(app="demo", version="2.0")]
    )
