"""Task routes: thin parse -> backend -> format."""
from __future__ import annotations

import json

from starlette.responses import Response

from .. import errors, odata
from ..backend import Backend
from ..backend.tasks import TASK_PROPERTIES
from ..wire import OpContext, empty_response, entity, json_response
from .common import list_params, page_response


class TaskHandlers:
    def __init__(self, backend: Backend) -> None:
        self.b = backend

    @staticmethod
    def _ids(ctx: OpContext) -> tuple[str, str]:
        return ctx.request.path_params["job_id"], ctx.request.path_params["task_id"]

    async def add(self, ctx: OpContext) -> Response:
        task = self.b.tasks.create(ctx.request.path_params["job_id"], await ctx.json())
        return empty_response(201, doc=task.doc, data_service_id=task.doc["url"])

    async def add_collection(self, ctx: OpContext) -> Response:
        data = await ctx.body_bytes()
        try:
            body = json.loads(data) if data.strip() else None
        except ValueError:
            raise errors.invalid_request_body("The request body is not valid JSON.") from None
        results = self.b.tasks.create_collection(ctx.request.path_params["job_id"], body, len(data), ctx.request_id)
        return json_response({"odata.metadata": f"{ctx.base_url}/$metadata#taskaddresult", "value": results})

    async def list(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        page = self.b.tasks.list(ctx.request.path_params["job_id"], p.filter, p.select, p.max_results, p.after)
        return page_response(ctx, "tasks", page, p)

    async def get(self, ctx: OpContext) -> Response:
        doc = self.b.tasks.get(*self._ids(ctx)).doc
        ctx.check_conditions(doc, write=False)
        select = odata.parse_select(ctx.query("$select"), TASK_PROPERTIES)
        return json_response(entity(ctx, "tasks/@Element", doc, select), doc=doc)

    async def update(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.tasks.get(*self._ids(ctx)).doc, write=True)
        task = self.b.tasks.update(*self._ids(ctx), await ctx.json())
        return empty_response(200, doc=task.doc, data_service_id=task.doc["url"])

    async def delete(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.tasks.get(*self._ids(ctx)).doc, write=True)
        self.b.tasks.delete(*self._ids(ctx))
        return empty_response(200)

    async def terminate(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.tasks.get(*self._ids(ctx)).doc, write=True)
        task = self.b.tasks.terminate(*self._ids(ctx))
        return empty_response(204, doc=task.doc, data_service_id=f"{task.doc['url']}/terminate")

    async def reactivate(self, ctx: OpContext) -> Response:
        ctx.check_conditions(self.b.tasks.get(*self._ids(ctx)).doc, write=True)
        task = self.b.tasks.reactivate(*self._ids(ctx))
        return empty_response(204, doc=task.doc, data_service_id=f"{task.doc['url']}/reactivate")

    async def list_subtasks(self, ctx: OpContext) -> Response:
        self.b.tasks.get(*self._ids(ctx))  # 404s as the service does
        return json_response({"odata.metadata": f"{ctx.base_url}/$metadata#subtaskinformations", "value": []})
