"""Helpers for list operations: read $filter/$select/maxresults/$skiptoken and answer one page with a nextLink."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.responses import Response

from .. import odata
from ..wire import OpContext, json_response, page_body


@dataclass(frozen=True)
class ListParams:
    filter: str | None
    select: str | None
    max_results: int
    after: int | None


def list_params(ctx: OpContext) -> ListParams:
    return ListParams(
        filter=ctx.query("$filter"),
        select=ctx.query("$select"),
        max_results=odata.parse_max_results(ctx.query("maxresults")),
        after=odata.decode_skiptoken(ctx.query("$skiptoken")),
    )


def page_response(ctx: OpContext, metadata: str, page: odata.Page, params: ListParams) -> Response:
    link = None
    if page.next_position is not None:
        path = quote(ctx.request.url.path)
        link = odata.next_link(ctx.base_url, path, ctx.api_version,
                               {"$filter": params.filter, "$select": params.select,
                                "maxresults": str(params.max_results)}, page.next_position)
    return json_response(page_body(ctx, metadata, page.items, link))
