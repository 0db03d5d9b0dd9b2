"""Job routes: thin parse -> backend -> format."""
from __future__ import annotations

from starlette.responses import Response

from .. import odata
from ..backend import Backend
from ..backend.jobs import JOB_PROPERTIES
from ..wire import OpContext, empty_response, entity, json_response
from .common import list_params, page_response


class JobHandlers:
    def __init__(self, backend: Backend) -> None:
        self.b = backend

    def _id(self, ctx: OpContext) -> str:
        return ctx.request.path_params["job_id"]

    async def add(self, ctx: OpContext) -> Response:
        job = self.b.jobs.create(await ctx.json())
        return empty_response(201, doc=job.doc, data_service_id=job.doc["url"])

    async def list(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        return page_response(ctx, "jobs", self.b.jobs.list(p.filter, p.select, p.max_results, p.after), p)

    async def get(self, ctx: OpContext) -> Response:
        doc = self.b.jobs.get(self._id(ctx)).doc
        ctx.check_conditions(doc, write=False)
        select = odata.parse_select(ctx.query("$select"), JOB_PROPERTIES)
        return json_response(entity(ctx, "jobs/@Element", doc, select), doc=doc)

    async def delete(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.jobs.get(self._id(ctx)).doc, write=True)
        self.b.jobs.delete(self._id(ctx))
        return empty_response(202)

    async def patch(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.jobs.get(self._id(ctx)).doc, write=True)
        job = self.b.jobs.update(self._id(ctx), await ctx.json(), replace=False)
        return empty_response(200, doc=job.doc, data_service_id=job.doc["url"])

    async def replace(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.jobs.get(self._id(ctx)).doc, write=True)
        job = self.b.jobs.update(self._id(ctx), await ctx.json(), replace=True)
        return empty_response(200, doc=job.doc, data_service_id=job.doc["url"])

    async def terminate(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.jobs.get(self._id(ctx)).doc, write=True)
        job = self.b.jobs.terminate(self._id(ctx), await ctx.json(optional=True))
        return empty_response(202, doc=job.doc, data_service_id=f"{job.doc['url']}/terminate")

    async def disable(self, ctx: OpContext) -> Response:
        job = self.b.jobs.disable(self._id(ctx), await ctx.json())
        return empty_response(202, doc=job.doc, data_service_id=f"{job.doc['url']}/disable")

    async def enable(self, ctx: OpContext) -> Response:
        job = self.b.jobs.enable(self._id(ctx))
        return empty_response(202, doc=job.doc, data_service_id=f"{job.doc['url']}/enable")

    async def task_counts(self, ctx: OpContext) -> Response:
        counts = self.b.jobs.task_counts(self._id(ctx))
        body = {"odata.metadata": f"{ctx.base_url}/$metadata#taskcountsresult/@Element", **counts}
        return json_response(body)
