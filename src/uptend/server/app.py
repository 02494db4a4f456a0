"""The ASGI app: routers, static TUF files, lifespan (database, TUF repo, re-signing)."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from uptend import __version__
from uptend.server import errors
from uptend.server.api import admin, agent, commands, ops
from uptend.server.api import configs as config_api
from uptend.server.api import rollouts as rollout_api
from uptend.server.bodylimit import BodyLimit
from uptend.server.generation import GenerationReader
from uptend.server.lastseen import LastSeen
from uptend.server.loadshed import InFlight, LoadShed
from uptend.server.notify import Hub
from uptend.server.ratelimit import Guard
from uptend.server.services.context import Context, utcnow
from uptend.server.services.releases import remove_orphaned_uploads
from uptend.server.services.rollouts import run_evaluator
from uptend.server.settings import Settings
from uptend.server.storage.db import Database
from uptend.server.storage.generation_read import GenerationRead
from uptend.server.tuf_repo import TufRepo

log = logging.getLogger("uptend.server")


async def _keep_signed(ctx: Context) -> None:
    """docs/architecture.md promise 2: expired metadata must never stop agents: re-sign in time."""
    while True:
        try:
            async with ctx.publish_lock:
                if await anyio.to_thread.run_sync(ctx.repo.refresh_expiring, utcnow()):
                    log.info("re-signed timestamp (expires %s)", ctx.repo.timestamp_expires())
        except Exception:  # keep re-signing whatever one attempt hit
            log.exception("re-signing TUF metadata failed; will retry")
        await asyncio.sleep(ctx.settings.resign_check_s)


def _freeze_startup_heap() -> None:
    """Keep what start-up built (modules, routes, models) out of every full collection.

    A full garbage collection walks each tracked object while the event loop waits: the
    ~140,000 objects of start-up cost ~100 ms per collection on the bench's core, several
    times a second under load, each a stall of every request in flight. What start-up built
    lives as long as the process, so it never needs collecting.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings) -> FastAPI:
    repo = TufRepo.open(settings.tuf_dir, expiry=settings.expiry)
    remove_orphaned_uploads(settings.upload_dir)  # before `server run` says it listens

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.db_url)
        lastseen = LastSeen(db, settings.lastseen_flush_s)
        generation_read = GenerationRead(db)
        reader = GenerationReader(generation_read)
        guard = Guard(settings.limits)
        hub = Hub(db, reader)
        ctx = Context(
            settings=settings,
            db=db,
            repo=repo,
            lastseen=lastseen,
            generation=reader,
            guard=guard,
            hub=hub,
        )
        app.state.ctx = ctx
        await hub.start()
        tasks = [
            asyncio.create_task(_keep_signed(ctx)),
            asyncio.create_task(lastseen.run()),
            asyncio.create_task(run_evaluator(ctx)),
        ]
        _freeze_startup_heap()
        try:
            yield
        finally:
            await hub.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                await lastseen.flush()  # what is in memory reaches the database at shutdown
            finally:
                await generation_read.close()
                await db.dispose()

    app = FastAPI(title="uptend", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.state.in_flight = InFlight(settings.max_in_flight, settings.retry_after_s)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        larger={("POST", "/api/v1/releases"): settings.max_upload_bytes},
    )
    app.add_middleware(LoadShed, gauge=app.state.in_flight)  # outermost: refuses first
    app.include_router(agent.router)
    app.include_router(admin.router, dependencies=[Depends(commands.changed)])
    app.include_router(commands.router, dependencies=[Depends(commands.changed)])
    app.include_router(config_api.router, dependencies=[Depends(commands.changed)])
    app.include_router(ops.router)
    app.include_router(rollout_api.router, dependencies=[Depends(commands.changed)])
    app.mount("/tuf/metadata", StaticFiles(directory=repo.metadata_dir), name="tuf-metadata")
    app.mount("/tuf/targets", StaticFiles(directory=repo.targets_dir), name="tuf-targets")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers while the process serves requests."""
        return {"status": "ok", "version": __version__}

    return app
