"""What a finished config fetch tells `configplan`: shared by app configs and agent settings."""

from uptend.agent import configplan, faults
from uptend.agent.worker import CancelledError, Work

TRANSIENT = (faults.Fault.NETWORK, faults.Fault.WORKER, faults.Fault.HOST)


def fetch_outcome(
    job: Work[str], version: int | None
) -> configplan.Fetched | configplan.FetchFailed | None:
    """Fetched, failed (transient or not), or None: cancelled, or nothing was asked."""
    try:
        job.result()
    except CancelledError:
        return None
    except (faults.WorkerError, faults.ReportedError) as e:
        found = faults.classify(e, staging=False)
        reason = found.reason if found is not None else str(e)
        transient = found is None or found.fault in TRANSIENT
        return configplan.FetchFailed(reason, transient=transient)
    return configplan.Fetched(version) if version is not None else None
