"""Pool and compute node routes: thin parse -> backend -> format."""
from __future__ import annotations

from starlette.responses import Response

from .. import odata
from ..backend import Backend
from ..backend.pools import NODE_PROPERTIES, POOL_PROPERTIES
from ..wire import OpContext, empty_response, entity, json_response
from .common import list_params, page_response


class PoolHandlers:
    def __init__(self, backend: Backend) -> None:
        self.b = backend

    async def add(self, ctx: OpContext) -> Response:
        pool = self.b.pools.create(await ctx.json())
        return empty_response(201, doc=pool.doc, data_service_id=pool.doc["url"])

    async def list(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        return page_response(ctx, "pools", self.b.pools.list(p.filter, p.select, p.max_results, p.after), p)

    async def get(self, ctx: OpContext) -> Response:
        pool = self.b.pools.get(ctx.request.path_params["pool_id"])
        doc = pool.doc
        head = ctx.request.method == "HEAD"
        ctx.check_conditions(doc, write=False)
        select = odata.parse_select(ctx.query("$select"), POOL_PROPERTIES)
        return json_response(None if head else entity(ctx, "pools/@Element", doc, select), doc=doc, head=head)

    async def delete(self, ctx: OpContext) -> Response:
        pool_id = ctx.request.path_params["pool_id"]
        ctx.check_conditions(self.b.pools.get(pool_id).doc, write=True)
        self.b.pools.delete(pool_id)
        return empty_response(202)

    async def patch(self, ctx: OpContext) -> Response:
        pool_id = ctx.request.path_params["pool_id"]
        ctx.check_conditions(self.b.pools.get(pool_id).doc, write=True)
        pool = self.b.pools.patch(pool_id, await ctx.json())
        return empty_response(200, doc=pool.doc, data_service_id=pool.doc["url"])

    async def update_properties(self, ctx: OpContext) -> Response:
        pool = self.b.pools.update_properties(ctx.request.path_params["pool_id"], await ctx.json())
        return empty_response(204, doc=pool.doc, data_service_id=pool.doc["url"])

    async def enable_autoscale(self, ctx: OpContext) -> Response:
        pool_id = ctx.request.path_params["pool_id"]
        ctx.check_conditions(self.b.pools.get(pool_id).doc, write=True)
        pool = self.b.pools.enable_autoscale(pool_id, await ctx.json(optional=True))
        return empty_response(200, doc=pool.doc, data_service_id=f"{pool.doc['url']}/enableautoscale")

    async def disable_autoscale(self, ctx: OpContext) -> Response:
        pool = self.b.pools.disable_autoscale(ctx.request.path_params["pool_id"])
        return empty_response(200, doc=pool.doc, data_service_id=f"{pool.doc['url']}/disableautoscale")

    async def evaluate_autoscale(self, ctx: OpContext) -> Response:
        pool_id = ctx.request.path_params["pool_id"]
        run = self.b.pools.evaluate_autoscale(pool_id, await ctx.json())
        pool = self.b.pools.get(pool_id)
        body = {"odata.metadata": f"{ctx.base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun",
                **run}
        return json_response(body, data_service_id=f"{pool.doc['url']}/evaluateautoscale")

    async def resize(self, ctx: OpContext) -> Response:
        pool_id = ctx.request.path_params["pool_id"]
        ctx.check_conditions(self.b.pools.get(pool_id).doc, write=True)
        pool = self.b.pools.resize(pool_id, await ctx.json())
        return empty_response(202, doc=pool.doc, data_service_id=f"{pool.doc['url']}/resize")

    async def stop_resize(self, ctx: OpContext) -> Response:
        pool = self.b.pools.stop_resize(ctx.request.path_params["pool_id"])
        return empty_response(202, doc=pool.doc, data_service_id=f"{pool.doc['url']}/stopresize")

    async def remove_nodes(self, ctx: OpContext) -> Response:
        pool = self.b.pools.remove_nodes(ctx.request.path_params["pool_id"], await ctx.json())
        return empty_response(202, doc=pool.doc, data_service_id=f"{pool.doc['url']}/removenodes")

    async def list_nodes(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        page = self.b.pools.list_nodes(ctx.request.path_params["pool_id"], p.filter, p.select, p.max_results, p.after)
        return page_response(ctx, "nodes", page, p)

    async def get_node(self, ctx: OpContext) -> Response:
        doc = self.b.pools.get_node(ctx.request.path_params["pool_id"], ctx.request.path_params["node_id"])
        select = odata.parse_select(ctx.query("$select"), NODE_PROPERTIES)
        return json_response(entity(ctx, "nodes/@Element", doc, select))
