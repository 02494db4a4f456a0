"""Signed remote configuration: each version signed as a TUF target, then handed out.

`set` signs the document as target `<app>/_config/<N>` in the app's delegated role (the key
that signs its releases; docs/config.md), records it and bumps the generation, so the
plans of every group are read again and held long-polls wake (the admin router's `changed`).
A host of a group runs the newest version set for that group or for every group.
A rollback is a new version with the content of an older one: versions only go up.
"""

import logging
import secrets
from functools import partial
from pathlib import Path

import anyio.to_thread

from uptend.durable import write_atomically
from uptend.errors import ConfigError, NotFoundError, UptendError
from uptend.protocol.configs import (
    MAX_CONFIG_BYTES,
    ConfigDocument,
    ConfigView,
    config_target,
)
from uptend.protocol.names import check_name
from uptend.protocol.settings import parse as parse_settings
from uptend.protocol.targets import AGENT_APP
from uptend.server.services.context import Context, utcnow
from uptend.server.storage import audit, generation
from uptend.server.storage import configs as rows
from uptend.server.storage.db import Tx
from uptend.server.storage.tables import ConfigRow, GroupRow

log = logging.getLogger(__name__)
HISTORY_LIMIT = 1000
CONFIG_SUFFIX = ".config.upload"  # removed with the other orphaned uploads at start


async def _check_group(tx: Tx, group: str | None) -> None:
    if group is not None and await tx.get(GroupRow, group) is None:
        raise NotFoundError(f"no group {group}", hint="see the groups with `uptend group list`")


def _staged(upload_dir: Path, data: bytes) -> Path:
    upload_dir.mkdir(exist_ok=True)
    path = upload_dir / f"{secrets.token_hex(8)}{CONFIG_SUFFIX}"
    write_atomically(path, data, mode=0o644)
    return path


async def set_config(
    ctx: Context,
    actor: str,
    app: str,
    content: str,
    group: str | None,
    *,
    rollback_of: int | None = None,
) -> ConfigView:
    """Sign `content` as the next config version of `app` (for `group`, or every group)."""
    check_name("app", app)
    data = content.encode()
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"the config of {app} is {len(data)} bytes, over the limit of {MAX_CONFIG_BYTES}",
            hint="keep large data in a release; the config is for settings",
        )
    if app == AGENT_APP:  # the agents' own settings: signed only if an agent would take them
        parse_settings(content)
    staged = _staged(ctx.settings.upload_dir, data)
    try:
        async with ctx.publish_lock, ctx.db.transaction() as tx:
            await _check_group(tx, group)
            version = await rows.next_version(tx, app)
            name = config_target(app, version)
            custom = {"app": app, "config": version, "group": group}
            try:
                target = await anyio.to_thread.run_sync(
                    partial(ctx.repo.add_target, name, staged, custom)
                )
            except ConfigError as e:
                if "offline" not in e.message:
                    raise
                raise ConfigError(
                    f"this server holds no key to sign the config of {app}: its release keys"
                    " are offline",
                    hint="keep the release keys on the server to push configuration",
                ) from None
            now = utcnow()
            row = ConfigRow(
                app=app,
                version=version,
                group=group,
                target=name,
                sha256=target.hashes["sha256"],
                length=target.length,
                content=content,
                created_by=actor,
                created_at=now,
                rollback_of=rollback_of,
            )
            tx.add(row)
            await generation.bump(tx)  # every plan is read again: the new config goes out
            scope = f"group {group}" if group else "every group"
            what = f" (rollback to {rollback_of})" if rollback_of else ""
            audit.record(tx, now, actor, "config.set", f"{app} v{version} for {scope}{what}")
    except UptendError as e:
        log.warning("refused config of %s: %s", app, e.message)
        raise
    finally:
        staged.unlink(missing_ok=True)
    return view(row)


async def rollback(ctx: Context, actor: str, app: str, to: int) -> ConfigView:
    """A new version with the content (and group) of version `to`."""
    old = await get(ctx, app, to)
    return await set_config(ctx, actor, app, old.content, old.group, rollback_of=to)


async def get(ctx: Context, app: str, version: int | None) -> ConfigDocument:
    async with ctx.db.transaction() as tx:
        row = await rows.get(tx, app, version)
    if row is None:
        which = f"version {version} of the config" if version is not None else "config"
        raise NotFoundError(
            f"no {which} of {app}", hint=f"see its versions with `uptend config history {app}`"
        )
    return ConfigDocument(**view(row).model_dump(), content=row.content)


async def history(
    ctx: Context, app: str, group: str | None, limit: int = HISTORY_LIMIT
) -> list[ConfigView]:
    async with ctx.db.transaction() as tx:
        await _check_group(tx, group)
        return [view(r) for r in await rows.history(tx, app, group, limit)]


def view(row: ConfigRow) -> ConfigView:
    return ConfigView(
        app=row.app,
        version=row.version,
        group=row.group,
        target=row.target,
        sha256=row.sha256,
        length=row.length,
        created_by=row.created_by,
        created_at=row.created_at,
        rollback_of=row.rollback_of,
    )
