"""Emulator-only routes under /_emulator (outside the Batch surface, no Batch auth; loopback test hooks):
health, request stats, fault injection settings and the node-seconds meter.

The FrontDoor serves these only to loopback Hosts, never to web pages, and only with `x-emulator-admin: 1`
(access.py); clients send `access.ADMIN_HEADERS`."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from ..config import ConfigError
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

    return Router(routes=[
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/stats", get_stats, methods=["GET"]),
        Route("/_emulator/stats/reset", reset_stats, methods=["POST"]),
        Route("/_emulator/faults", get_faults, methods=["GET"]),
        Route("/_emulator/faults", set_faults, methods=["POST", "PUT"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/meter", get_meter, methods=["GET"]),
        Route("/_emulator/meter/reset", reset_meter, methods=["POST"]),
    ])
