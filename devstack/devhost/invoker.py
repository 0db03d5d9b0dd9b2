"""Run one function invocation: id, context variables for log correlation, timing, outcome.

Log lines follow the host's wording ("Executing 'Functions.X' (Reason=..., Id=...)",
"Executed 'Functions.X' (Succeeded|Failed, Id=..., Duration=...ms)") with the same
facts as structured fields.
"""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .discovery import DiscoveredFunction
from .logs import function_name_var, get_logger, invocation_id_var

log = get_logger("invoke")


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    succeeded: bool
    error: BaseException | None
    duration_ms: float


def invoke(function: DiscoveredFunction, build_args: Callable[[str], dict[str, Any]], reason: str,
           **fields: Any) -> InvocationResult:
    """Call the user function with the arguments `build_args(invocation_id)` returns; never raises."""
    invocation_id = str(uuid.uuid4())
    id_token = invocation_id_var.set(invocation_id)
    name_token = function_name_var.set(function.name)
    started = time.perf_counter()
    fields = {"invocation_id": invocation_id, "function": function.name, **fields}
    try:
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id,
                 extra={"event": "invocation.start", "reason": reason, **fields})
        try:
            result = function.user_function(**build_args(invocation_id))
            if inspect.isawaitable(result):
                # The worker runs async functions on its event loop; one loop per call is enough here.
                asyncio.run(_await(result))
        except Exception as exc:  # the function's failure is data for the trigger, not a host crash
            duration = (time.perf_counter() - started) * 1000
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", function.name, invocation_id,
                      duration, exc_info=exc,
                      extra={"event": "invocation.end", "outcome": "failed", "duration_ms": round(duration, 1),
                             "error": f"{type(exc).__name__}: {exc}", **fields})
            return InvocationResult(invocation_id, False, exc, duration)
        duration = (time.perf_counter() - started) * 1000
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", function.name, invocation_id,
                 duration, extra={"event": "invocation.end", "outcome": "succeeded",
                                  "duration_ms": round(duration, 1), **fields})
        return InvocationResult(invocation_id, True, None, duration)
    finally:
        invocation_id_var.reset(id_token)
        function_name_var.reset(name_token)


async def _await(awaitable) -> Any:
    return await awaitable

