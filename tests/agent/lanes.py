"""One server for a whole test module, one isolated lane (app + group + hosts) per test.

Starting `uptend server` costs seconds; the crash matrix has a dozen cases. Each lane gets
its own app name and group, so a release published in one lane is never directed to the
hosts of another, and every lane's agents and apps are stopped when its test ends.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.agent.crash_support import PROBATION_S, bring_up, kill_app_processes
from tests.support.fleet import Fleet, Host

_numbers = itertools.count(1)


@dataclass
class Lane:
    fleet: Fleet
    app: str
    group: str
    hosts: list[Host] = field(default_factory=list)

    def up(self, version: str = "1.0", **release: Any) -> Host:
        """A new host in this lane that runs `version` (the first call also publishes it)."""
        host = bring_up(self.fleet, app=self.app, group=self.group, version=version, **release)
        self.hosts.append(host)
        return host

    def publish(self, version: str, **release: Any) -> None:
        # A crashing build must outlive a Python start on a loaded machine, or its probation
        # ends first and it passes as healthy; its crash ends probation early, so this is free.
        release.setdefault("probation", 3.0 if release.get("mode") == "crash" else PROBATION_S)
        self.fleet.publish(self.app, version, **release)

    def close(self) -> None:
        for host in self.hosts:
            host.kill()
            kill_app_processes(host, self.app)


@pytest.fixture(scope="module")
def shared_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


@pytest.fixture
def lane(shared_fleet: Fleet) -> Iterator[Lane]:
    n = next(_numbers)
    lane = Lane(shared_fleet, app=f"demo-{n}", group=f"lane-{n}")
    try:
        yield lane
    finally:
        lane.close()
