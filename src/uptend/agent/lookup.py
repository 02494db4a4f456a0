"""Facts about a directed target, gathered in the worker child: signed metadata, preconditions.

One job per check cycle refreshes TUF once (python-tuf: one Updater per cycle) and looks up
every target that `decide` asked about. The target's path comes from the directive (the
server names the signed target); its signed `custom` must describe the directed release,
which `decide` checks. A `kind` this agent does not know is returned as found, so `decide`
can refuse it by name instead of reporting a validation error.
"""

from typing import Any

from uptend.agent import artifacts
from uptend.agent.decide import Found, LookupFailed
from uptend.agent.installers import Signed, supported
from uptend.agent.jobs import Answer, Ask
from uptend.agent.layout import Layout
from uptend.agent.preconditions import Preconditions, unmet
from uptend.agent.tuf_session import TargetFile, TufSession
from uptend.agent.tufopen import TUF_LOCK, session
from uptend.agent.worker import Context
from uptend.errors import TransientError, VerificationError
from uptend.protocol.targets import parse_custom


def _info(tuf: TufSession, app: str, version: str, path: str | None) -> TargetFile:
    if path is None:
        raise VerificationError(
            f"the server did not name the signed target of {app} {version}",
            hint="upgrade the server: directives carry the target's path",
        )
    try:
        return tuf.target(path)
    except VerificationError as e:
        raise VerificationError(
            f"{app} {version} is not a signed target ({path})",
            hint="the server directed a version the release key never signed",
        ) from e


def find(tuf: TufSession, app: str, version: str, path: str | None) -> Signed:
    """The signed target at `path`; VerificationError if it is not signed or not valid."""
    info = _info(tuf, app, version, path)
    return Signed(info.path, info, parse_custom(info.path, info.custom))


def _raw(custom: Any, key: str) -> str:
    value = custom.get(key, "") if isinstance(custom, dict) else ""
    return value if isinstance(value, str) else ""


def look(
    layout: Layout, metadata_url: str, pre: Preconditions, asks: list[Ask], job: Context
) -> dict[str, Answer]:
    """Answer every ask (the job of one cycle)."""
    answers: dict[str, Answer] = {}
    with TUF_LOCK:
        try:
            tuf = session(layout, metadata_url)
        except (TransientError, OSError) as e:
            failed = LookupFailed(getattr(e, "message", str(e)), transient=True)
            return {a.app: Answer(failed) for a in asks}
        except VerificationError as e:
            return {a.app: Answer(LookupFailed(e.message, transient=False)) for a in asks}
        try:
            for ask in asks:
                job.check()
                answers[ask.app] = _one(tuf, layout, pre, ask)
        finally:
            tuf.close()
    return answers


def _one(tuf: TufSession, layout: Layout, pre: Preconditions, ask: Ask) -> Answer:
    try:
        info = _info(tuf, ask.app, ask.version, ask.path)
        kind = _raw(info.custom, "kind") or "bundle"
        if kind not in supported():
            custom = info.custom
            return Answer(Found(info.path, _raw(custom, "app"), _raw(custom, "version"), kind))
        signed = Signed(info.path, info, parse_custom(info.path, info.custom))
    except TransientError as e:
        return Answer(LookupFailed(e.message, transient=True))
    except VerificationError as e:
        return Answer(LookupFailed(e.message, transient=False))
    c = signed.custom
    why = unmet(pre, layout.app_dir(ask.app), signed.info.length + c.unpacked_size)
    found = Found(signed.name, c.app, c.version, c.kind.value, why, c.floor)
    return Answer(found, artifacts.record(signed))
