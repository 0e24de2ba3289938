"""Calling a user function the way the Python worker does: the binding objects it would build (HttpRequest,
SDK-type BlobClient through the extension's own converter, InputStream, TimerRequest) and a `context`."""

from __future__ import annotations

import inspect
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions import _abc

from tools.devhost.indexing import FunctionSpec


class _Trace(_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Retry(_abc.RetryContext):
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._count, self._max = retry_count, max_retry_count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return None


class DevContext(func.Context):
    """The `context` argument: invocation id, function name and directory, trace and retry contexts."""

    def __init__(self, function_name: str, function_directory: str, retry_count: int = 0,
                 max_retry_count: int = 0) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _Trace()
        self._retry = _Retry(retry_count, max_retry_count)
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> _abc.RetryContext:
        return self._retry

    @property
    def thread_local_storage(self) -> Any:
        return self._tls


@dataclass
class ModelBindingData:
    """What the host sends for a deferred (SDK-type) binding: which connection, container and blob."""

    content: str
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def blob_argument(annotation: Any, connection: str, container: str, name: str, uri: str,
                  download: Any) -> Any:
    """The trigger argument for a blob: an SDK type (BlobClient, ContainerClient, StorageStreamDownloader) built by
    the binding extension, or an InputStream / bytes / str of the whole blob (as the worker would)."""
    if inspect.isclass(annotation):
        try:
            from azurefunctions.extensions.base import Datum
            from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter
        except ImportError:  # the extension is not installed: only the classic types
            BlobClientConverter = None
        if BlobClientConverter is not None and BlobClientConverter.check_input_type_annotation(annotation):
            content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": name})
            return BlobClientConverter.decode(Datum(ModelBindingData(content), "model_binding_data"),
                                              trigger_metadata=None, pytype=annotation)
    data: bytes = download()
    if annotation is bytes:
        return data
    if annotation is str:
        return data.decode("utf-8")
    return func.blob.InputStream(data=data, name=f"{container}/{name}", uri=uri, length=len(data))


def call(spec: FunctionSpec, trigger_value: Any, context: DevContext) -> Any:
    kwargs = {spec.trigger_parameter: trigger_value}
    if "context" in spec.parameters:
        kwargs["context"] = context
    return spec.user_function(**kwargs)
