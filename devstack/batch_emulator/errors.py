"""The one place Batch error codes live: `BatchError` plus a factory per code, and the wire format.

Codes, statuses and messages follow "Batch Status and Error Codes"
(learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes). The body shape is the service's OData v3
error (recorded in Azure/azure-sdk-for-python batch test recordings and nextflow-io/nextflow#5713):
    {"odata.metadata": ".../$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
     "code": "PoolExists", "message": {"lang": "en-US", "value": "...\\nRequestId:<id>\\nTime:<iso>"},
     "values": [{"key": ..., "value": ...}]}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from .timeutil import iso

ERROR_METADATA_SUFFIX = "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
ERROR_CONTENT_TYPE = "application/json;odata=minimalmetadata"


@dataclass
class BatchError(Exception):
    status: int
    code: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self, base_url: str, request_id: str, now: datetime) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "odata.metadata": base_url + ERROR_METADATA_SUFFIX,
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{request_id}\nTime:{iso(now)}"},
        }
        if self.values:
            doc["values"] = [{"key": k, "value": v} for k, v in self.values]
        return doc

    def as_result_error(self, request_id: str, now: datetime) -> dict[str, Any]:
        """The error object embedded in an addtaskcollection per-task result (no odata.metadata)."""
        doc: dict[str, Any] = {
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{request_id}\nTime:{iso(now)}"},
        }
        if self.values:
            doc["values"] = [{"key": k, "value": v} for k, v in self.values]
        return doc


def _values(pairs: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in pairs]


# --- common REST codes ---------------------------------------------------------------------------------------

def authentication_failed(detail: str) -> BatchError:
    return BatchError(403, "AuthenticationFailed",
                      "Server failed to authenticate the request. Make sure the value of Authorization header is "
                      "formed correctly including the signature.",
                      [("AuthenticationErrorDetail", detail)])


def missing_required_header(name: str) -> BatchError:
    return BatchError(400, "MissingRequiredHeader", "A required HTTP header was not specified.",
                      [("HeaderName", name)])


def invalid_header_value(name: str, value: str, reason: str) -> BatchError:
    return BatchError(400, "InvalidHeaderValue",
                      "The value provided for one of the HTTP headers was not in the correct format.",
                      _values([("HeaderName", name), ("HeaderValue", value), ("Reason", reason)]))


# --- emulator access policy (access.py; issue 14). Not service codes: the service has no such checks -------

def host_not_allowed(host: str, allowed: Sequence[str]) -> BatchError:
    # The service's code for a malformed header; the Reason says what the emulator accepts.
    return BatchError(400, "InvalidHeaderValue",
                      "The value provided for one of the HTTP headers was not in the correct format.",
                      _values([("HeaderName", "Host"), ("HeaderValue", host),
                               ("Reason", "The Batch emulator answers only requests addressed to a loopback host ("
                                          + ", ".join(allowed) + ", with or without a port).")]))


def request_from_web_page(header: str, value: str) -> BatchError:
    return BatchError(403, "RequestFromWebPageNotAllowed",
                      "The Batch emulator does not serve requests made by web pages.",
                      _values([("HeaderName", header), ("HeaderValue", value)]))


def admin_header_required(header: str) -> BatchError:
    return BatchError(403, "EmulatorAdminHeaderRequired",
                      f"Emulator-only routes require the request header '{header}: 1'.",
                      [("HeaderName", header)])


def missing_required_query_parameter(name: str) -> BatchError:
    return BatchError(400, "MissingRequiredQueryParameter",
                      "A query parameter that's mandatory for this request is not specified.",
                      [("QueryParameterName", name)])


def invalid_query_parameter(name: str, value: str, reason: str) -> BatchError:
    return BatchError(400, "InvalidQueryParameterValue",
                      "Value for one of the query parameters specified in the request URI is invalid.",
                      _values([("QueryParameterName", name), ("QueryParameterValue", value), ("Reason", reason)]))


def out_of_range_query_parameter(name: str, value: str, reason: str) -> BatchError:
    return BatchError(400, "OutOfRangeQueryParameterValue",
                      "A query parameter specified in the request URI is outside the permissible range.",
                      _values([("QueryParameterName", name), ("QueryParameterValue", value), ("Reason", reason)]))


def unsupported_request_version(version: str) -> BatchError:
    return BatchError(400, "UnsupportedRequestVersion", "The specified request version is not supported.",
                      [("QueryParameterName", "api-version"), ("QueryParameterValue", version)])


def invalid_request_body(reason: str) -> BatchError:
    return BatchError(400, "InvalidRequestBody", "The specified Request Body is not syntactically valid.",
                      [("Reason", reason)])


def missing_required_property(name: str) -> BatchError:
    return BatchError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                      [("PropertyName", name)])


def invalid_property_value(name: str, value: Any, reason: str) -> BatchError:
    return BatchError(400, "InvalidPropertyValue",
                      "The value provided for one of the properties in the request body is invalid.",
                      _values([("PropertyName", name), ("PropertyValue", value), ("Reason", reason)]))


def request_body_too_large(reason: str) -> BatchError:
    return BatchError(413, "RequestBodyTooLarge",
                      "The request body is too large and exceeds the maximum permissible limit.",
                      [("Reason", reason)])


def resource_not_found() -> BatchError:
    return BatchError(404, "ResourceNotFound", "The specified resource does not exist.")


def unsupported_operation(method: str, path: str) -> BatchError:
    # The service answers unknown URIs with 400 InvalidUri; an emulator that *knows* the operation exists but has
    # not implemented it says so with 501 so a missing feature is never mistaken for a client bug.
    return BatchError(501, "NotImplemented",
                      f"The Batch emulator does not implement the operation {method} {path}.",
                      [("Method", method), ("Path", path)])


def server_busy(retry_after: int | None) -> BatchError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return BatchError(503, "ServerBusy",
                      "The server is currently unable to receive requests. Please retry your request.",
                      headers=headers)


def too_many_requests(retry_after: int | None) -> BatchError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return BatchError(429, "TooManyRequests", "The server is throttling requests. Please retry your request.",
                      headers=headers)


def internal_error() -> BatchError:
    return BatchError(500, "InternalError", "The server encountered an internal error. Please retry the request.")


def operation_timed_out() -> BatchError:
    return BatchError(500, "OperationTimedOut", "The operation could not be completed within the permitted time.")


def condition_not_met(status: int) -> BatchError:
    return BatchError(status, "ConditionNotMet",
                      "The condition specified using HTTP conditional header(s) is not met.")


# --- Batch resource codes ------------------------------------------------------------------------------------

def pool_exists() -> BatchError:
    return BatchError(409, "PoolExists", "The specified pool already exists.")


def pool_not_found() -> BatchError:
    return BatchError(404, "PoolNotFound", "The specified pool does not exist.")


def pool_being_deleted() -> BatchError:
    return BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")


def pool_being_resized() -> BatchError:
    return BatchError(409, "PoolBeingResized", "The specified pool is being resized.")


def operation_invalid_for_current_state(reason: str) -> BatchError:
    # Used for "resize an autoscale pool": the REST docs only say 409; the generic 409 code is this one (unverified).
    return BatchError(409, "OperationInvalidForCurrentState",
                      "The specified operation is not valid for the current state of the resource.",
                      [("Reason", reason)])


# Formula syntax/length errors come from the autoscale package (AutoScaleError.code), see backend/autoscaling.py.
def invalid_autoscaling_settings(reason: str) -> BatchError:
    return BatchError(400, "InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid.",
                      [("Reason", reason)])


def too_many_enable_autoscale_requests() -> BatchError:
    return BatchError(503, "TooManyEnableAutoScaleRequests",
                      "Too many Enable Pool AutoScale requests are issued on the pool. Enable AutoScale requests for "
                      "the same pool must be separated by at least 30 seconds.")


def node_not_found() -> BatchError:
    return BatchError(404, "NodeNotFound", "The specified node does not exist.")


def job_exists() -> BatchError:
    return BatchError(409, "JobExists", "The specified job already exists.")


def job_not_found() -> BatchError:
    return BatchError(404, "JobNotFound", "The specified job does not exist.")


def job_completed() -> BatchError:
    return BatchError(409, "JobCompleted", "The specified job is already in a completed state.")


def job_being_terminated() -> BatchError:
    return BatchError(409, "JobBeingTerminated", "The specified job is being terminated.")


def job_being_deleted() -> BatchError:
    return BatchError(409, "JobBeingDeleted",
                      "The specified job has been marked for deletion and is being garbage collected.")


def job_not_active() -> BatchError:
    return BatchError(409, "JobNotActive", "The specified job is not in active state.")


def task_exists() -> BatchError:
    return BatchError(409, "TaskExists", "The specified task already exists.")


def task_not_found() -> BatchError:
    return BatchError(404, "TaskNotFound", "The specified task does not exist.")


def task_completed() -> BatchError:
    return BatchError(409, "TaskCompleted", "The specified task is already in a completed state.")


def task_not_completed() -> BatchError:
    return BatchError(409, "TaskNotCompleted",
                      "The specified task is not in a completed state, and the requested operation can be performed "
                      "only on completed tasks.")


def task_succeeded() -> BatchError:
    return BatchError(409, "TaskSucceeded",
                      "The specified task has already completed successfully, and the requested operation cannot be "
                      "performed on successful tasks.")


def file_not_found() -> BatchError:
    return BatchError(404, "FileNotFound", "The specified file does not exist.")
