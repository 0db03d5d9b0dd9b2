"""Emulator-only routes under /_emulator (outside the Batch surface, no Batch auth; loopback test hooks):
health, request stats, fault injection settings, the node-seconds meter, and a pool's metric history (autoscale
formula tests: devstack/compat/formulas.py).

The FrontDoor serves these only to loopback Hosts, never to web pages, and only with `x-emulator-admin: 1`
(access.py); clients send `access.ADMIN_HEADERS`."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from ..backend.autoscaling import replace_history
from ..config import ConfigError
from ..timeutil import utcnow
from ..faults import FaultInjector
from ..stats import RequestStats

if TYPE_CHECKING:
    from ..scheduler import Scheduler


def admin_router(stats: RequestStats, faults: FaultInjector, scheduler: "Scheduler") -> Router:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def get_stats(_: Request) -> Response:
        return JSONResponse(stats.snapshot())

    async def reset_stats(_: Request) -> Response:
        stats.reset()
        return JSONResponse(stats.snapshot())

    async def get_faults(_: Request) -> Response:
        return JSONResponse(faults.describe())

    async def set_faults(request: Request) -> Response:
        try:
            body: Any = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            faults.configure_from_json(body)
        except (ValueError, TypeError, ConfigError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(faults.describe())

    async def clear_faults(_: Request) -> Response:
        faults.configure_from_json({})
        return JSONResponse(faults.describe())

    async def get_meter(_: Request) -> Response:
        return JSONResponse(scheduler.meter.snapshot())

    async def reset_meter(_: Request) -> Response:
        scheduler.meter.reset()
        return JSONResponse(scheduler.meter.snapshot())

    async def set_history(request: Request) -> Response:
        """Body {"series": {"$PendingTasks": [oldest, ..., newest]}, "periodSeconds": 30, "newestAgeSeconds": 0}:
        those metrics' histories become exactly these samples (visible to formulas after the sample lag)."""
        try:
            body: Any = json.loads(await request.body() or b"{}")
            series = body["series"]
            if not isinstance(series, dict) or not all(
                    isinstance(k, str) and k.startswith("$") and isinstance(v, list)
                    and all(isinstance(x, (int, float)) for x in v) for k, v in series.items()):
                raise ValueError("series must map $Metric names to lists of numbers")
            period = timedelta(seconds=float(body.get("periodSeconds", 30)))
            age = timedelta(seconds=float(body.get("newestAgeSeconds", 0)))
            if period <= timedelta(0) or age < timedelta(0):
                raise ValueError("periodSeconds must be positive and newestAgeSeconds not negative")
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        state = scheduler.s
        with state.lock:
            pool = state.pool(request.path_params["pool_id"])
            if pool is None:
                return JSONResponse({"error": "no such pool"}, status_code=404)
            replace_history(pool, utcnow(), series, period, age)
        return JSONResponse({"pool": pool.id, "metrics": sorted(series)})

    return Router(routes=[
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/stats", get_stats, methods=["GET"]),
        Route("/_emulator/stats/reset", reset_stats, methods=["POST"]),
        Route("/_emulator/faults", get_faults, methods=["GET"]),
        Route("/_emulator/faults", set_faults, methods=["POST", "PUT"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/meter", get_meter, methods=["GET"]),
        Route("/_emulator/meter/reset", reset_meter, methods=["POST"]),
        Route("/_emulator/pools/{pool_id}/history", set_history, methods=["POST"]),
    ])
