"""Recording API calls: every call a step makes is written down with its parameters, the
response (bounded) and the time, and provider errors are sorted into "the provider refused"
(recorded, the procedure continues) and real failures.

Responses are kept in the custody log, so they are bounded: a full Kubernetes Pod object or
an EC2 ``DescribeInstances`` page can be large. What is kept is the JSON form up to
``MAX_RESPONSE`` characters, plus the SHA-256 of the full JSON so a reader can tell the
truncated copy from the original if it is collected again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from podmortem.case.custody import iso_utc, utc_now
from podmortem.cloud.model import CallRecord

T = TypeVar("T")
MAX_RESPONSE = 16_384
MAX_DEPTH = 40

# Error codes that mean "the provider will not let us", as opposed to "something broke".
# AWS: IAM denials, Auto Mode's managed instances, APIs a partition (or moto) lacks.
# Azure: locks and deny assignments (AKS Automatic's node resource group), RBAC.
# GCP/gRPC: PERMISSION_DENIED, FAILED_PRECONDITION (Autopilot), UNIMPLEMENTED.
REFUSAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "OperationNotPermitted",
        "InvalidParameterCombination",
        "UnsupportedOperation",
        "NotImplemented",
        "InvalidAction",
        "InvalidRequestException",
        "ScopeLocked",
        "DenyAssignmentAuthorizationFailed",
        "AuthorizationFailed",
        "LinkedAuthorizationFailed",
        "OperationNotAllowed",
        "Forbidden",
        "PERMISSION_DENIED",
        "FAILED_PRECONDITION",
        "UNIMPLEMENTED",
        "403",
        "405",
        "501",
        # An endpoint that answers an API with something that is not an AWS response (a
        # proxy's or an emulator's HTML 500 for an action it does not offer) cannot do it.
        "UnparseableResponse",
    }
)


class ProviderRefused(Exception):  # noqa: N818 - a state, recorded as "not-permitted"
    """A call the provider refused (permission, lock, managed mode, unsupported API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def to_jsonable(obj: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of an SDK response: boto3 dicts, Azure models, proto-plus and
    Kubernetes models all end up as plain dicts and lists."""
    if depth > MAX_DEPTH:
        return "<too deep>"
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(obj[:4096])).decode(), "length": len(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v, depth + 1) for v in obj]
    as_dict = getattr(obj, "as_dict", None)  # Azure (msrest) models
    if callable(as_dict):
        return to_jsonable(as_dict(), depth + 1)
    pb = getattr(obj, "_pb", None)  # proto-plus messages (google-cloud-*)
    if pb is not None:
        from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

        return MessageToDict(pb, preserving_proto_field_name=True)
    if hasattr(obj, "openapi_types") and hasattr(obj, "to_dict"):  # kubernetes models
        return to_jsonable(obj.to_dict(), depth + 1)
    return repr(obj)[:1000]


def bounded(obj: Any) -> tuple[Any, str, bool]:
    """Return (kept copy, sha256 of the full JSON, truncated?)."""
    data = json.dumps(to_jsonable(obj), sort_keys=True, default=str)
    sha = hashlib.sha256(data.encode()).hexdigest()
    if len(data) <= MAX_RESPONSE:
        return json.loads(data), sha, False
    return {"truncated_json": data[:MAX_RESPONSE]}, sha, True


def error_code(exc: BaseException) -> str:
    """The provider's error code for ``exc``, whatever SDK raised it."""
    if type(exc).__name__ == "ResponseParserError":  # botocore: not an AWS answer at all
        return "UnparseableResponse"
    resp = getattr(exc, "response", None)  # botocore ClientError
    if isinstance(resp, Mapping):
        err = resp.get("Error") or {}
        code = err.get("Code") if isinstance(err, Mapping) else None
        if code:
            return str(code)
        status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return str(status)
    if resp is not None and callable(getattr(resp, "json", None)):
        # google-api-core over REST: the JSON error's "status" is the canonical code
        # (FAILED_PRECONDITION for Autopilot), which the HTTP status (400) hides.
        try:
            body = resp.json()
        except ValueError:
            body = None
        status_name = (
            (body or {}).get("error", {}).get("status") if isinstance(body, dict) else None
        )
        if isinstance(status_name, str) and status_name:
            return status_name
    err_obj = getattr(exc, "error", None)  # azure HttpResponseError.error.code
    code = getattr(err_obj, "code", None)
    if code:
        return str(code)
    grpc_status = getattr(exc, "grpc_status_code", None)  # google.api_core exceptions
    if grpc_status is not None:
        return str(getattr(grpc_status, "name", grpc_status))
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return str(status)
    code_attr = getattr(exc, "code", None)
    if isinstance(code_attr, int | str):
        return str(code_attr)
    return type(exc).__name__


class CallLog:
    """Collects the calls of one step. ``read`` calls always run; ``write`` calls are the
    ones a dry run must never make, so the step asks :attr:`execute` before making them."""

    def __init__(
        self,
        *,
        execute: bool,
        keep_responses: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.execute = execute
        # Log collection stores each response as an artifact; the custody record then keeps
        # only the response's hash instead of a second (truncated) copy.
        self.keep_responses = keep_responses
        self.calls: list[CallRecord] = []
        self._clock = clock

    def read(self, service: str, method: str, fn: Callable[..., T], /, **params: Any) -> T:
        return self._call(service, method, fn, params, write=False)

    def find(
        self,
        service: str,
        method: str,
        fn: Callable[..., T],
        /,
        *,
        missing: Callable[[Exception], bool],
        **params: Any,
    ) -> T | None:
        """A read of something that may not exist: ``None`` when the error is one that
        ``missing`` (the provider's "not found") recognises. The failed call stays recorded."""
        try:
            return self.read(service, method, fn, **params)
        except ProviderRefused:
            raise
        except Exception as exc:
            if missing(exc):
                return None
            raise

    def write(self, service: str, method: str, fn: Callable[..., T], /, **params: Any) -> T:
        if not self.execute:
            raise RuntimeError(f"{service}.{method} is a write and this is a dry run")
        return self._call(service, method, fn, params, write=True)

    def _call(
        self, service: str, method: str, fn: Callable[..., T], params: dict[str, Any], write: bool
    ) -> T:
        started = iso_utc(utc_now())
        t0 = self._clock()
        rec = CallRecord(
            service=service,
            method=method,
            params=to_jsonable(params),
            started=started,
            duration_s=0.0,
            write=write,
        )
        self.calls.append(rec)
        try:
            result = fn(**params)
            result = _settle(result)
        except Exception as exc:
            rec.duration_s = round(self._clock() - t0, 6)
            rec.error_code = error_code(exc)
            rec.error = f"{type(exc).__name__}: {exc}"[:2000]
            if refused(rec.error_code, exc):
                raise ProviderRefused(rec.error_code, str(exc)[:500]) from exc
            raise
        rec.duration_s = round(self._clock() - t0, 6)
        kept, rec.response_sha256, rec.response_truncated = bounded(_strip(result))
        if self.keep_responses:
            rec.response = kept
        else:
            rec.response_truncated = True
        return result


def refused(code: str, exc: BaseException) -> bool:
    if code in REFUSAL_CODES:
        return True
    # Azure returns 409 Conflict for a locked node resource group with the lock in the text.
    text = str(exc)
    return "ScopeLocked" in text or "DenyAssignment" in text


def _settle(result: Any) -> Any:
    """Azure ``begin_*`` calls return a poller: wait for it, so the recorded response is the
    final resource and a failure surfaces inside the call that caused it."""
    if hasattr(result, "result") and hasattr(result, "done") and hasattr(result, "polling_method"):
        return result.result()
    # google-cloud-compute returns an ExtendedOperation: wait for it (an operation that
    # ends in error raises here) and record the operation itself.
    if type(result).__name__ == "ExtendedOperation":
        result.result()
        return getattr(result, "_extended_operation", result)
    return result


def _strip(result: Any) -> Any:
    # boto3's ResponseMetadata (request ids, retry counts, HTTP headers) is call metadata,
    # not the resource; keep only the request id, which AWS support can trace.
    if isinstance(result, Mapping) and "ResponseMetadata" in result:
        meta = result.get("ResponseMetadata") or {}
        out = {k: v for k, v in result.items() if k != "ResponseMetadata"}
        if isinstance(meta, Mapping) and meta.get("RequestId"):
            out["RequestId"] = meta["RequestId"]
        return out
    return result
