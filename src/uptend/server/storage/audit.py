"""The audit log: one row per admin mutation."""

from datetime import datetime

from uptend.server.storage.db import Tx
from uptend.server.storage.tables import AuditRow


def record(tx: Tx, now: datetime, actor: str, action: str, detail: str) -> None:
    tx.add(AuditRow(at=now, actor=actor, action=action, detail=detail))
