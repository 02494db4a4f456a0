"""What the agent says about one app at check-in: its state, and while updating, how far.

All of it inside the server's bounds (`protocol.limits`): a check-in the server refused
would be refused again at every retry, so text is cut and cleaned here, and a report that
cannot be made to fit is dropped rather than sent.
"""

from dataclasses import replace
from datetime import UTC, datetime

from uptend.agent.installers.base import PackageState
from uptend.agent.machine import HoldState, Pending, Phase, Plan
from uptend.agent.wire import AppState, AppStatus, Outcome, Report, clean
from uptend.protocol import limits, packages
from uptend.protocol.versions import is_version

_EARLIEST = datetime(limits.MIN_YEAR, 1, 1, tzinfo=UTC)
_LATEST = datetime(limits.MAX_YEAR, 12, 31, tzinfo=UTC)


Detail = tuple[int | None, int | None, float | None]  # bytes done, total, probation left


def app_status(
    app: str,
    plan: Plan,
    installed: str | None,
    alive: bool,
    detail: Detail,
    unwritable: str,
    restarts: int = 0,
    kind: str | None = None,
    package: PackageState | None = None,
) -> AppStatus:
    """What the check-in says of `app`; `restarts`: its crashes since its version started.

    `kind`: the install kind of the installed version; `package`: its package as the
    package manager reports it (settled apps of a package kind only).
    """
    status = replace(_state(app, plan, installed, alive, detail, unwritable, restarts), kind=kind)
    if package is None:
        return status
    return replace(
        status,
        package=package.name,
        package_expected=package.expected,
        package_version=None if package.found is None else packages.fit(package.found),
    )


def _state(
    app: str,
    plan: Plan,
    installed: str | None,
    alive: bool,
    detail: Detail,
    unwritable: str,
    restarts: int,
) -> AppStatus:
    done, total, left = detail
    if plan.phase is Phase.READY:  # staged; the directive says "not now"
        reason = plan.waiting or f"deferred: {plan.target} is staged"
        return AppStatus(
            app=app,
            version=installed,
            state=AppState.DEFERRED,
            target=plan.target,
            reason=reason,
            phase=plan.phase.value,
        )
    if plan.phase is not Phase.IDLE:
        reason = f"{plan.phase} {plan.target}"
        if done is not None and total:
            reason += f": {done} of {total} bytes"
        elif left is not None:
            reason += f": {left:.0f} s of probation left"
        elif plan.phase is Phase.FETCHING and plan.failure:
            reason += f": retrying after {plan.failure}"
        return AppStatus(
            app=app,
            version=installed,
            state=AppState.UPDATING,
            target=plan.target,
            reason=clean(reason, limits.MAX_REASON),
            phase=plan.phase.value,
            bytes_done=done,
            bytes_total=total,
            probation_left_s=left,
        )
    target = None
    if plan.hold is not None:
        state = AppState.DEFERRED if plan.hold.state is HoldState.DEFERRED else AppState.FAILED
        # the version held back: a staged rollout counts the host failed on its release
        # (state failed, target its version), whether it failed to install or rolled back
        reason, target = plan.hold.reason, plan.hold.version
    elif alive:
        state, reason = AppState.RUNNING, unwritable
    elif installed is None:
        state, reason = AppState.PENDING, ""
    else:
        state, reason = AppState.STOPPED, "not running"
    return AppStatus(
        app=app,
        version=installed,
        state=state,
        target=target,
        reason=clean(reason, limits.MAX_REASON),
        restarts=min(restarts, limits.MAX_INT),
    )


def report_of(app: str, p: Pending) -> Report | None:
    """A report the plan holds, as the check-in sends it (None: it cannot be sent)."""
    try:
        outcome = Outcome(p.outcome)
        at = datetime.fromtimestamp(p.at, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return fit(
        Report(
            app=app, version=p.version, outcome=outcome, reason=p.reason, log_tail=p.log_tail, at=at
        )
    )


def fit(report: Report) -> Report | None:
    """`report` inside the server's bounds, or None if its version cannot be a release's.

    Text is cut and cleaned, the time put in UTC and inside the years the server takes (a
    clock reset to 1970 still reports).
    """
    if not is_version(report.version):
        return None
    at = report.at if report.at.tzinfo is not None else report.at.replace(tzinfo=UTC)
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # within a day of datetime's own bounds
        at = _LATEST if at.year > limits.MIN_YEAR else _EARLIEST
    return replace(
        report,
        reason=clean(report.reason, limits.MAX_REASON),
        log_tail=clean(report.log_tail, limits.MAX_LOG_TAIL, keep_end=True),
        at=min(max(at, _EARLIEST), _LATEST),
    )
