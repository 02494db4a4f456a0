"""Named kill points for crash-safety tests: inert unless UPTEND_CRASHPOINT is set.

`UPTEND_CRASHPOINT=name` kills the agent with SIGKILL the first time it reaches `name`
(no finally, no atexit, no flush: like a power cut for the process). `UPTEND_CRASHPOINT_LOG=file`
appends every point reached, so a test can prove no point goes untested.

A point reached in a worker child (`download:mid`, `unpack:*`, `dpkg:installed`) kills the
agent that started it first (named by `UPTEND_WORKER_OF`, which `worker.ChildJob` sets),
then the child: the whole agent dies there, as in a power cut. (A child killed alone is a
transient fault: tests/agent/test_worker_e2e.py kills one mid-download.)
"""

import os
import signal
from pathlib import Path

ARM_ENV = "UPTEND_CRASHPOINT"
LOG_ENV = "UPTEND_CRASHPOINT_LOG"
WORKER_ENV = "UPTEND_WORKER_OF"  # in a worker child: the pid of its agent

ALL_CRASHPOINTS = (
    "saved:fetching",  # journal says fetching, nothing fetched yet
    "download:mid",  # part of the target is in staging
    "saved:staging",  # download verified, before unpack
    "unpack:mid",  # staging unpack half done
    "unpack:renamed",  # versions/<v> complete, journal not yet moved on
    "saved:activating",  # before the old app is stopped
    "switch:stopped",  # old app stopped, current not yet switched
    "switch:pointed",  # current switched, new app not yet started
    "saved:probation",  # new app started, probation begins
    "probation:mid",  # during the health probation
    "saved:rolling_back",  # the rollback is decided
    "saved:idle",  # committed (or rolled back), cleanup may be pending
)

# The package kinds (installers/package.py: deb, rpm, apt): the package manager installed the
# package, `current` not yet switched.
DEB_CRASHPOINTS = ("dpkg:installed",)
# The agent's own update (installers/agent.py, selfupdate.py, driver.py), in order: the new
# environment built / its trial passed (in the worker child), the launcher's pointer written,
# the loop stopped and the apps left (just before the exec), the new version confirmed good.
SELF_CRASHPOINTS = ("self:built", "self:trial", "self:pointed", "self:handover", "self:confirmed")

# A credential rotation (agent/control.py): handed over, not yet stored / stored, not yet used.
CREDENTIAL_CRASHPOINTS = ("credential:received", "credential:stored")


def crashpoint(name: str) -> None:
    if log := os.environ.get(LOG_ENV):
        with Path(log).open("a") as f:
            f.write(name + "\n")
    agent = os.environ.get(WORKER_ENV)
    if os.environ.get(ARM_ENV) == name:
        if agent is not None:
            os.kill(int(agent), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
