"""Task file routes: download, properties (HEAD), list, delete."""
from __future__ import annotations

import shutil

from starlette.responses import FileResponse, Response

from .. import errors, odata
from ..backend.files import TaskFile, TaskFiles
from ..timeutil import parse_iso, rfc1123
from ..wire import OpContext, empty_response, json_response
from .common import list_params, page_response

FILE_FILTERS = dict([odata.prop("name", odata.Kind.STRING, odata.EQ_NE, startswith=True)])


def _file_headers(f: TaskFile) -> dict[str, str]:
    props = f.properties()
    return {"ocp-creation-time": rfc1123(parse_iso(props["creationTime"])),
            "ocp-batch-file-isdirectory": "true" if f.is_directory else "false",
            "ocp-batch-file-url": f.url, "ocp-batch-file-mode": props["fileMode"],
            "Last-Modified": rfc1123(parse_iso(props["lastModified"]))}


class FileHandlers:
    def __init__(self, files: TaskFiles) -> None:
        self.files = files

    @staticmethod
    def _ids(ctx: OpContext) -> tuple[str, str]:
        return ctx.request.path_params["job_id"], ctx.request.path_params["task_id"]

    async def get(self, ctx: OpContext) -> Response:
        f = self.files.get(*self._ids(ctx), ctx.request.path_params["file_path"])
        headers = _file_headers(f)
        if ctx.request.method == "HEAD" or f.is_directory:
            headers["Content-Length"] = "0" if f.is_directory else str(f.path.stat().st_size)
            return Response(status_code=200, headers=headers, media_type="application/octet-stream")
        return FileResponse(f.path, headers=headers, media_type="application/octet-stream")

    async def delete(self, ctx: OpContext) -> Response:
        f = self.files.get(*self._ids(ctx), ctx.request.path_params["file_path"])
        recursive = (ctx.query("recursive") or "false").lower() == "true"
        if f.is_directory:
            if any(f.path.iterdir()) and not recursive:
                raise errors.BatchError(409, "DirectoryNotEmpty", "The directory is not empty.")
            shutil.rmtree(f.path, ignore_errors=True)
        else:
            f.path.unlink(missing_ok=True)
        return empty_response(200)

    async def list(self, ctx: OpContext) -> Response:
        p = list_params(ctx)
        predicate = odata.compile_filter(p.filter, FILE_FILTERS)
        recursive = (ctx.query("recursive") or "false").lower() == "true"
        entries = [(i, f.entry()) for i, f in enumerate(self.files.list(*self._ids(ctx), recursive))]
        page = odata.paginate(entries, predicate, p.after, p.max_results, None)
        return page_response(ctx, "files", page, p)
