"""Route table of the Batch surface: one handler module per resource, every route wrapped as a named operation
(REST operation ids such as Pool_Add) and a catch-all that answers unknown operations with 501."""
from __future__ import annotations

from starlette.routing import Route

from .. import errors
from ..backend import Backend
from ..faults import FaultInjector
from ..stats import RequestStats
from ..wire import OpContext, operation
from ..backend.files import TaskFiles
from .files import FileHandlers
from .jobs import JobHandlers
from .nodecounts import NodeCountHandlers
from .pools import PoolHandlers
from .tasks import TaskHandlers

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _unsupported(ctx: OpContext) -> None:
    raise errors.unsupported_operation(ctx.request.method, ctx.request.url.path)


def batch_routes(backend: Backend, stats: RequestStats, faults: FaultInjector) -> list[Route]:
    pools, jobs, tasks = PoolHandlers(backend), JobHandlers(backend), TaskHandlers(backend)
    counts = NodeCountHandlers(backend)
    files = FileHandlers(TaskFiles(backend.state))

    def r(path: str, method: str, name: str, handler, head_name: str | None = None) -> Route:
        methods = [method] + (["HEAD"] if head_name else [])
        return Route(path, operation(name, handler, stats, faults, head_name), methods=methods, name=name)

    P = "/pools/{pool_id}"
    J = "/jobs/{job_id}"
    T = J + "/tasks/{task_id}"
    return [
        r("/pools", "POST", "Pool_Add", pools.add),
        r("/pools", "GET", "Pool_List", pools.list),
        r(P, "GET", "Pool_Get", pools.get, head_name="Pool_Exists"),
        r(P, "DELETE", "Pool_Delete", pools.delete),
        r(P, "PATCH", "Pool_Patch", pools.patch),
        r(P + "/updateproperties", "POST", "Pool_UpdateProperties", pools.update_properties),
        r(P + "/enableautoscale", "POST", "Pool_EnableAutoScale", pools.enable_autoscale),
        r(P + "/disableautoscale", "POST", "Pool_DisableAutoScale", pools.disable_autoscale),
        r(P + "/evaluateautoscale", "POST", "Pool_EvaluateAutoScale", pools.evaluate_autoscale),
        r(P + "/resize", "POST", "Pool_Resize", pools.resize),
        r(P + "/stopresize", "POST", "Pool_StopResize", pools.stop_resize),
        r(P + "/removenodes", "POST", "Pool_RemoveNodes", pools.remove_nodes),
        r(P + "/nodes", "GET", "ComputeNode_List", pools.list_nodes),
        r(P + "/nodes/{node_id}", "GET", "ComputeNode_Get", pools.get_node),
        r("/nodecounts", "GET", "Account_ListPoolNodeCounts", counts.list),
        r("/jobs", "POST", "Job_Add", jobs.add),
        r("/jobs", "GET", "Job_List", jobs.list),
        r(J, "GET", "Job_Get", jobs.get),
        r(J, "DELETE", "Job_Delete", jobs.delete),
        r(J, "PATCH", "Job_Patch", jobs.patch),
        r(J, "PUT", "Job_Update", jobs.replace),
        r(J + "/terminate", "POST", "Job_Terminate", jobs.terminate),
        r(J + "/disable", "POST", "Job_Disable", jobs.disable),
        r(J + "/enable", "POST", "Job_Enable", jobs.enable),
        r(J + "/taskcounts", "GET", "Job_GetTaskCounts", jobs.task_counts),
        r(J + "/tasks", "POST", "Task_Add", tasks.add),
        r(J + "/tasks", "GET", "Task_List", tasks.list),
        r(J + "/addtaskcollection", "POST", "Task_AddCollection", tasks.add_collection),
        r(T, "GET", "Task_Get", tasks.get),
        r(T, "PUT", "Task_Update", tasks.update),
        r(T, "DELETE", "Task_Delete", tasks.delete),
        r(T + "/terminate", "POST", "Task_Terminate", tasks.terminate),
        r(T + "/reactivate", "POST", "Task_Reactivate", tasks.reactivate),
        r(T + "/subtasksinfo", "GET", "Task_ListSubtasks", tasks.list_subtasks),
        r(T + "/files", "GET", "File_ListFromTask", files.list),
        r(T + "/files/{file_path:path}", "GET", "File_GetFromTask", files.get,
          head_name="File_GetPropertiesFromTask"),
        r(T + "/files/{file_path:path}", "DELETE", "File_DeleteFromTask", files.delete),
        Route("/{path:path}", operation("Unsupported", _unsupported, stats, faults), methods=ALL_METHODS),
    ]
