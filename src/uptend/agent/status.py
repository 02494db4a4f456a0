"""What the agent says about one app at check-in: its state, and while updating, how far."""

from datetime import UTC, datetime

from uptend.agent.machine import HoldState, Pending, Phase, Plan
from uptend.agent.wire import AppState, AppStatus, Report


def app_status(
    app: str,
    plan: Plan,
    installed: str | None,
    alive: bool,
    detail: tuple[int | None, int | None, float | None],
    unwritable: str,
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
            reason=reason,
            phase=plan.phase.value,
            bytes_done=done,
            bytes_total=total,
            probation_left_s=left,
        )
    if plan.hold is not None:
        state = AppState.DEFERRED if plan.hold.state is HoldState.DEFERRED else AppState.FAILED
        reason = plan.hold.reason
    elif alive:
        state, reason = AppState.RUNNING, unwritable
    elif installed is None:
        state, reason = AppState.PENDING, ""
    else:
        state, reason = AppState.STOPPED, "not running"
    return AppStatus(app=app, version=installed, state=state, target=None, reason=reason)


def report_of(app: str, p: Pending) -> Report:
    """A report the plan holds, as the check-in sends it."""
    at = datetime.fromtimestamp(p.at, UTC)
    return Report(
        app=app, version=p.version, outcome=p.outcome, reason=p.reason, log_tail=p.log_tail, at=at
    )
