"""GET /nodecounts: per-pool node counts by state (dedicated and low-priority)."""
from __future__ import annotations

from starlette.responses import Response

from ..backend import Backend
from ..wire import OpContext
from .common import list_params, page_response


class NodeCountHandlers:
    def __init__(self, backend: Backend) -> None:
        self.b = backend

    async def list(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        page = self.b.pools.node_counts(p.filter, p.max_results, p.after)
        return page_response(ctx, "poolnodecounts", page, p)
