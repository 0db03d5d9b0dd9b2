"""Import function_app.py and describe its functions from the app object itself.

The real Python worker indexes a v2 app by importing `function_app.py`, finding the
single `FunctionRegister` instance (usually `app = func.FunctionApp()`) and calling
`get_functions()`. Doing the same here means there is no second list of functions
to keep in sync. NOTE `get_functions()` caches its bindings and raises
"does not have a unique function name" when called twice on one app object, so
it is called exactly once per import.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from azure.functions import _abc as azf_abc
from azure.functions.decorators.function_app import FunctionRegister

from .errors import DevHostError

APP_MODULE = "function_app"
# Script-host function ids: receipts, timer status blobs, poison messages and the
# Event Grid `functionName` all use "Host.Functions.<name>".
FUNCTION_ID_PREFIX = "Host.Functions."

BLOB_TRIGGER = "blobTrigger"
TIMER_TRIGGER = "timerTrigger"
EVENT_GRID_SOURCE = "EventGrid"
POLLING_SOURCE = "LogsAndContainerScan"

# How the blob trigger parameter is materialised (see bindings.py).
BLOB_ARG_STREAM = "stream"              # func.InputStream / unannotated
BLOB_ARG_BYTES = "bytes"
BLOB_ARG_STR = "str"
BLOB_ARG_SDK_PREFIX = "sdk:"            # azurefunctions.extensions.bindings.blob.<Type>
_SDK_BINDING_MODULE = "azurefunctions.extensions.bindings.blob"
_SDK_TYPES = ("BlobClient", "ContainerClient", "StorageStreamDownloader")


@dataclass(frozen=True)
class DiscoveredFunction:
    name: str
    function_id: str
    trigger: typing.Any            # azure.functions.decorators BlobTrigger / TimerTrigger
    trigger_param: str
    trigger_arg_kind: str | None   # blob only
    wants_context: bool
    user_function: Callable[..., typing.Any]
    script_dir: Path

    @property
    def trigger_type(self) -> str:
        return self.trigger.get_binding_name()


@dataclass(frozen=True)
class SkippedFunction:
    name: str
    reason: str


def import_function_app(app_dir: Path) -> ModuleType:
    script = app_dir / "function_app.py"
    if not script.exists():
        raise DevHostError(f"{script} not found: --app-dir must point at the Functions app root")
    # The worker runs with the app root on sys.path (so `import shared` works).
    root = str(app_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(APP_MODULE, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(APP_MODULE, None)
        raise DevHostError(f"importing {script} failed: {exc!r}") from exc
    return module


def find_app(module: ModuleType) -> FunctionRegister:
    """Exactly one FunctionRegister (FunctionApp/Blueprint host) per module, like the worker's loader."""
    apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if not apps:
        raise DevHostError(f"{module.__file__} defines no FunctionApp (expected e.g. `app = func.FunctionApp()`)")
    if len(apps) > 1:
        raise DevHostError(f"{module.__file__} defines more than one FunctionApp instance")
    return apps[0]


def discover(app_dir: Path) -> tuple[list[DiscoveredFunction], list[SkippedFunction]]:
    app = find_app(import_function_app(app_dir))
    root = logging.getLogger()
    root.addFilter(_drop_auth_level_warning)
    try:
        functions = app.get_functions()  # once: a second call raises (cached bindings)
    except ValueError as exc:
        raise DevHostError(f"function_app.py: {exc}") from exc
    finally:
        root.removeFilter(_drop_auth_level_warning)
    found: list[DiscoveredFunction] = []
    skipped: list[SkippedFunction] = []
    for fn in functions:
        name = fn.get_function_name()
        trigger = fn.get_trigger()
        kind = trigger.get_binding_name() if trigger is not None else None
        if kind not in (BLOB_TRIGGER, TIMER_TRIGGER):
            skipped.append(SkippedFunction(name, f"trigger type {kind!r} is not supported by the dev host"))
            continue
        extra = [b for b in fn.get_bindings() if b is not trigger]
        if extra:
            kinds = ", ".join(sorted({b.get_binding_name() for b in extra}))
            raise DevHostError(f"function {name!r}: bindings other than the trigger ({kinds}) are not "
                               f"supported by the dev host; use the SDK clients in the function body")
        user_function = fn.get_user_function()
        param_kind, wants_context = _inspect_parameters(name, user_function, trigger)
        found.append(DiscoveredFunction(
            name=name, function_id=FUNCTION_ID_PREFIX + name, trigger=trigger, trigger_param=trigger.name,
            trigger_arg_kind=param_kind, wants_context=wants_context, user_function=user_function,
            script_dir=app_dir))
    return found, skipped


def _drop_auth_level_warning(record: logging.LogRecord) -> bool:
    # azure-functions warns "Auth level is not applied to non http function app" for apps without
    # an HTTP function; it is noise for blob/timer apps.
    return not str(record.msg).startswith("Auth level is not applied")


def _inspect_parameters(name: str, func: Callable[..., typing.Any], trigger) -> tuple[str | None, bool]:
    signature = inspect.signature(func)
    params = signature.parameters
    if trigger.name not in params:
        raise DevHostError(f"function {name!r}: trigger arg_name {trigger.name!r} is not a parameter of "
                           f"{func.__name__}{signature}")
    unknown = [p for p in params if p not in (trigger.name, "context")]
    if unknown:
        raise DevHostError(f"function {name!r}: parameters {unknown} are not bound to anything")
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable string annotations: fall back to the raw ones
        hints = {k: p.annotation for k, p in params.items() if p.annotation is not inspect.Parameter.empty}
    annotation = hints.get(trigger.name)
    if trigger.get_binding_name() == TIMER_TRIGGER:
        is_timer_request = isinstance(annotation, type) and issubclass(annotation, azf_abc.TimerRequest)
        if annotation is not None and not is_timer_request:
            raise DevHostError(f"function {name!r}: a timer parameter must be annotated func.TimerRequest")
        return None, "context" in params
    return _blob_arg_kind(name, annotation), "context" in params


def _blob_arg_kind(name: str, annotation) -> str:
    if annotation is None or annotation is inspect.Parameter.empty:
        return BLOB_ARG_STREAM
    if isinstance(annotation, type):
        if issubclass(annotation, azf_abc.InputStream):
            return BLOB_ARG_STREAM
        if annotation is bytes:
            return BLOB_ARG_BYTES
        if annotation is str:
            return BLOB_ARG_STR
        if annotation.__module__.startswith(_SDK_BINDING_MODULE) and annotation.__name__ in _SDK_TYPES:
            return BLOB_ARG_SDK_PREFIX + annotation.__name__
    raise DevHostError(f"function {name!r}: blob trigger parameter type {annotation!r} is not supported "
                       f"(use func.InputStream, bytes, str or azurefunctions.extensions.bindings.blob types)")
