"""Reports waiting for the next check-in, kept on disk so a restart loses none."""

import json

from pydantic import TypeAdapter

from uptend.agent import files
from uptend.agent.layout import Layout
from uptend.protocol import Report

_REPORTS = TypeAdapter(list[Report])
MAX_PENDING = 200  # oldest dropped beyond this: an agent offline for months stays bounded


class Outbox:
    def __init__(self, layout: Layout) -> None:
        self.path = layout.outbox
        try:
            self.pending = _REPORTS.validate_json(self.path.read_bytes())
        except (OSError, ValueError):
            self.pending = []

    def add(self, report: Report) -> None:
        self.pending = [*self.pending, report][-MAX_PENDING:]
        self._save()

    def delivered(self, count: int) -> None:
        self.pending = self.pending[count:]
        self._save()

    def _save(self) -> None:
        data = json.dumps([r.model_dump(mode="json") for r in self.pending]).encode()
        files.write_atomically(self.path, data)
