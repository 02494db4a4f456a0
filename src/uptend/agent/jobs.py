"""The jobs the agent hands to its worker child, and their JSON both ways, in one place.

    kind     request                                          result
    lookup   root, metadata_url, preconditions, asks          {app: answer}
    fetch    root, app, version, targets_url                  "fetched"
    stage    root, app, version                               "staged"
    config   root, metadata_url, targets_url, app, version, path   "fetched"
    activate root, app, version                               {said, busy, failed, output}

An answer is `{"facts": <Found | LookupFailed>, "record": <signed record> | null}`; the
record is what the signed metadata says about the target, kept beside its download
(`Layout.target_record`) so that a fetch or stage after a restart needs no look-up. The
agent only passes it on: the child alone parses it. Every value is built and read
field by field here; a result that does not fit is the worker's failure.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uptend.agent import decide, files, machine
from uptend.agent.installers.base import InstallBusyError, Installer, InstallFailedError
from uptend.agent.layout import Layout
from uptend.agent.preconditions import Preconditions
from uptend.agent.worker import Spawn, Work


@dataclass(frozen=True, slots=True)
class Ask:
    app: str
    version: str
    path: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    facts: decide.Found | decide.LookupFailed
    record: dict[str, Any] | None = None  # the signed record, when the target verified


# -- lookup ---------------------------------------------------------------------------------


def lookup(
    spawn: Spawn, layout: Layout, metadata_url: str, pre: Preconditions, asks: list[Ask]
) -> Work[dict[str, Answer]]:
    request = {
        "root": str(layout.root),
        "metadata_url": metadata_url,
        "preconditions": {
            "reboot": pre.reboot,
            "disk": pre.disk,
            "commands": [list(c) for c in pre.commands],
            "reboot_flag": str(pre.reboot_flag),
        },
        "asks": [{"app": a.app, "version": a.version, "path": a.path} for a in asks],
    }
    return spawn("lookup", "lookup", request, answers_from)


def preconditions_from(value: dict[str, Any]) -> Preconditions:
    return Preconditions(
        reboot=bool(value["reboot"]),
        disk=bool(value["disk"]),
        commands=tuple(tuple(str(arg) for arg in c) for c in value["commands"]),
        reboot_flag=Path(value["reboot_flag"]),
    )


def asks_from(value: list[dict[str, Any]]) -> list[Ask]:
    return [Ask(str(a["app"]), str(a["version"]), _opt(a["path"])) for a in value]


def answer_to(answer: Answer) -> dict[str, Any]:
    facts: dict[str, Any]
    match answer.facts:
        case decide.Found(path=path, app=app, version=version, kind=kind, unmet=unmet, floor=floor):
            facts = {"path": path, "app": app, "version": version, "kind": kind, "unmet": unmet}
            facts["floor"] = floor
        case decide.LookupFailed(reason=reason, transient=transient):
            facts = {"reason": reason, "transient": transient}
    return {"facts": facts, "record": answer.record}


def answers_from(value: dict[str, Any]) -> dict[str, Answer]:
    out = {}
    for app, answer in value.items():
        f = answer["facts"]
        facts: decide.Found | decide.LookupFailed
        if "reason" in f:
            facts = decide.LookupFailed(_str(f["reason"]), _bool(f["transient"]))
        else:
            args = (_str(f["path"]), _str(f["app"]), _str(f["version"]), _str(f["kind"]))
            facts = decide.Found(*args, _opt(f["unmet"]), _opt(f.get("floor")))
        record = answer["record"]
        if record is not None and not isinstance(record, dict):
            raise TypeError("a signed record is an object")
        out[_str(app)] = Answer(facts, record)
    return out


def failed_lookup(asks: list[Ask], reason: str) -> dict[str, Answer]:
    """Every ask answered with a transient failure (the look-up's worker failed)."""
    return {a.app: Answer(decide.LookupFailed(reason, transient=True)) for a in asks}


# -- fetch and stage ------------------------------------------------------------------------


def keep_record(layout: Layout, app: str, version: str, record: dict[str, Any]) -> None:
    """Keep the signed record beside the download-to-be (before the fetch is journaled)."""
    layout.make_app(app)
    files.write_atomically(layout.target_record(app, version), json.dumps(record).encode())


def fetch(spawn: Spawn, layout: Layout, app: str, version: str, targets_url: str) -> Work[Any]:
    request = {"root": str(layout.root), "app": app, "version": version}
    return spawn(f"{app}-fetch", "fetch", {**request, "targets_url": targets_url}, _fetched)


def stage(spawn: Spawn, layout: Layout, app: str, version: str) -> Work[Any]:
    request = {"root": str(layout.root), "app": app, "version": version}
    return spawn(f"{app}-stage", "stage", request, _staged)


def _fetched(value: Any) -> machine.Event:
    if value != "fetched":
        raise ValueError(f"not a fetch result: {str(value)[:40]!r}")
    return machine.Fetched()


def _staged(value: Any) -> machine.Event:
    if value != "staged":
        raise ValueError(f"not a stage result: {str(value)[:40]!r}")
    return machine.Staged()


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _opt(value: Any) -> str | None:
    return None if value is None else _str(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def config(
    spawn: Spawn,
    layout: Layout,
    urls: tuple[str, str],
    app: str,
    version: int,
    path: str,
) -> Work[str]:
    """Fetch and verify config `version` of `app` (`agent/configfetch.py`).

    `urls`: the metadata and the targets base URLs.
    """
    request = {
        "root": str(layout.root),
        "metadata_url": urls[0],
        "targets_url": urls[1],
        "app": app,
        "version": version,
        "path": path,
    }
    return spawn(f"{app}-config", "config", request, _str)


# -- activate -------------------------------------------------------------------------------

MAX_SAID = 200  # lines of what the system's installer printed, the last ones, into the log
MAX_SAID_LINE = 500  # characters of each
MAX_OUTPUT = 8192  # characters of its output's tail, for the report


@dataclass(frozen=True, slots=True)
class Activated:
    """What the system's installer made of a version, in the worker child (dpkg, rpm, ...).

    `busy`: InstallBusyError's reason (deferred); `failed`: InstallFailedError's, with
    `output` the tail of what the installer printed; both empty: installed, `current`
    points at the version. `said`: the lines for the attempt log.
    """

    said: list[str]
    busy: str = ""
    failed: str = ""
    output: str = ""


def activate(spawn: Spawn, layout: Layout, app: str, version: str) -> Work[Activated]:
    request = {"root": str(layout.root), "app": app, "version": version}
    return spawn(f"{app}-activate", "activate", request, _activated)


def activation(installer: Installer, version: str) -> dict[str, Any]:
    """Run `installer.activate(version)` (in the child): its outcome as the job's result."""
    said: list[str] = []
    outcome = Activated(said)
    try:
        installer.activate(version, said.append)
    except InstallBusyError as e:
        outcome = Activated(said, busy=e.reason)
    except InstallFailedError as e:
        outcome = Activated(said, failed=e.reason, output=e.output[-MAX_OUTPUT:])
    kept = [line[:MAX_SAID_LINE] for line in said[-MAX_SAID:]]
    if len(said) > MAX_SAID:
        kept.insert(0, f"({len(said) - MAX_SAID} earlier lines left out)")
    return {"said": kept, "busy": outcome.busy, "failed": outcome.failed, "output": outcome.output}


def _activated(value: Any) -> Activated:
    if not isinstance(value, dict) or not isinstance(value.get("said"), list):
        raise ValueError("not an activation result")
    said = [_str(line) for line in value["said"]]
    return Activated(said, _str(value["busy"]), _str(value["failed"]), _str(value["output"]))
