"""Assemble the ASGI application: front door (auth, ids, api-version) -> Batch routes; /_emulator admin routes."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp

from .auth import Authenticator
from .backend import Backend
from .faults import FaultInjector
from .handlers import batch_routes
from .handlers.admin import admin_router
from .scheduler import Scheduler
from .stats import RequestStats
from .wire import FrontDoor


def build_app(backend: Backend, scheduler: Scheduler, stats: RequestStats, faults: FaultInjector) -> ASGIApp:
    cfg = backend.config
    batch = Starlette(routes=batch_routes(backend, stats, faults))
    authenticator = Authenticator(cfg.account_name, cfg.account_key, cfg.allow_bearer, cfg.clock_skew)
    return FrontDoor(batch, admin_router(stats, faults, scheduler), authenticator, stats)
