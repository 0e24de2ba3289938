"""The blob storage adapter (`BlobStore` on Azure Blob Storage): clients from settings (connection string or managed
identity), streaming reads, create-only writes, SAS grants; moving rejected files aside with a reason is
`rejected.py`'s. The SDK's errors become the project's own (NotFound, AlreadyExists, Stale) here."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient, ContentSettings

from shared.adapters.rejected import RejectedArea
from shared.adapters.sas import SasMinter, SasPolicy
from shared.adapters.transport import pooled_transport, sdk_retries
from shared.errors import AlreadyExists, NotFound, Stale
from shared.ports.blobs import (
    BlobInfo,
    BlobStore,
    Grant,
    Rejection,
    SasPurpose,
    decode_metadata,
    encode_metadata,
)
from shared.records import BlobRef
from shared.settings import Settings

log = logging.getLogger("shared.storage")
CHUNK_BYTES = 5 * 1024 * 1024
PREFETCH = 1  # chunks downloaded ahead of the one being read
_CHUNKING: dict[str, Any] = {"max_single_get_size": CHUNK_BYTES, "max_chunk_get_size": CHUNK_BYTES}
T = TypeVar("T")


def translated(call: Callable[[], T], what: str) -> T:
    """`call()`, with the SDK's not-found / exists / modified errors as the project's own."""
    try:
        return call()
    except ResourceNotFoundError:
        raise NotFound(f"{what} does not exist") from None
    except ResourceModifiedError:
        raise Stale(f"{what} changed since it was read") from None
    except ResourceExistsError:
        raise AlreadyExists(f"{what} exists already") from None


def blob_info(props: BlobProperties) -> BlobInfo:
    return BlobInfo(str(props.name), str(props.etag), int(props.size or 0), props.last_modified,
                    decode_metadata(props.metadata))


def prefetched(source: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """`source`'s items, read up to `depth` ahead by a thread of their own; an error in `source` is raised here,
    and the thread stops when the consumer does."""
    items: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        items.put((item, None), timeout=0.2)
                        break
                if stop.is_set():
                    return
            items.put((None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            items.put((None, exc))

    thread = threading.Thread(target=pump, name="blob-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()


class Storage(BlobStore):
    """The app's storage account."""

    def __init__(self, settings: Settings, credential: Any = None, retries: int = 3) -> None:
        """From the connection string when there is one (the SDK reads `UseDevelopmentStorage=true` too), else
        from the account's URL and `credential` (a managed identity)."""
        self.settings = settings
        self.connection_string: str | None = None
        self.credential: Any = credential
        if settings.storage_connection_string is not None:
            self.connection_string = settings.storage_connection_string.get_secret_value()
            self.blob = BlobServiceClient.from_connection_string(self.connection_string, transport=pooled_transport(),
                                                                 **_CHUNKING, **sdk_retries(retries))
        else:
            url = settings.storage_blob_uri or f"https://{settings.storage_account_name}.blob.core.windows.net"
            self.blob = BlobServiceClient(url, credential=credential, transport=pooled_transport(), **_CHUNKING,
                                          **sdk_retries(retries))
        self.account_key: str | None = getattr(self.blob.credential, "account_key", None)
        self.minter = SasMinter(self.blob, self.account_key, SasPolicy.from_settings(settings))
        self.rejections = RejectedArea(self.blob, settings.rejected_container, lambda ref: self.blob.get_blob_client(
            ref.container, ref.name).url + self.grant(ref, SasPurpose.COPY_ASIDE).token)

    @property
    def base(self) -> str:
        return self.minter.base_location

    def owns(self, base: str) -> bool:
        return self.minter.owns(base)

    def grant(self, ref: BlobRef, purpose: SasPurpose) -> Grant:
        return self.minter.grant(ref.container, ref.name, purpose)

    def ensure_containers(self) -> None:
        """Create the app's containers that are missing. In Azure the template creates them, and the app's
        identity has no right to create containers: so existing ones are only looked at, never created again."""
        s = self.settings
        for name in (s.data_container, s.models_container, s.rejected_container):
            container = self.blob.get_container_client(name)
            if not container.exists():
                with contextlib.suppress(ResourceExistsError):
                    container.create_container()

    def info(self, ref: BlobRef) -> BlobInfo:
        client = self.blob.get_blob_client(ref.container, ref.name)
        return blob_info(translated(client.get_blob_properties, ref.path))

    def exists(self, ref: BlobRef) -> bool:
        return bool(self.blob.get_blob_client(ref.container, ref.name).exists())

    def chunks(self, ref: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        """Stream a blob in chunks of CHUNK_BYTES, pinned to `etag` when given. The next chunk downloads while the
        caller works on this one (memory: at most PREFETCH + 2 chunks)."""
        client = self.blob.get_blob_client(ref.container, ref.name)
        kwargs: dict[str, Any] = {"max_concurrency": 1}
        if etag:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        stream = translated(lambda: client.download_blob(**kwargs), ref.path)
        chunks = iter(prefetched(stream.chunks(), PREFETCH))
        while True:  # a version replaced mid-download fails a later chunk: the same translation
            chunk = translated(lambda: next(chunks, None), ref.path)
            if chunk is None:
                return
            yield chunk

    def read_bytes(self, ref: BlobRef, limit: int = 16 * 1024 * 1024) -> bytes:
        client = self.blob.get_blob_client(ref.container, ref.name)
        data = translated(lambda: client.download_blob(max_concurrency=1).readall(), ref.path)
        if len(data) > limit:
            raise ValueError(f"{ref.path} is larger than {limit} bytes")
        return bytes(data)

    def create(self, ref: BlobRef, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """Write a new blob, never over an existing one. True when written; False when a blob with the very same
        content is there already (a retried upload); AlreadyExists for different content."""
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        client = self.blob.get_blob_client(ref.container, ref.name)
        try:
            client.upload_blob(data, overwrite=False, metadata=encode_metadata(metadata),
                               content_settings=ContentSettings(content_type=content_type,
                                                                content_md5=bytearray(digest)))
            return True
        except ResourceExistsError:
            existing = client.get_blob_properties().content_settings.content_md5
            if existing is not None and bytes(existing) == digest:
                return False
            raise AlreadyExists(f"{ref.path} exists already with other content") from None

    def reject(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        return self.rejections.reject(ref, reason)

    def note_unreadable(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        return self.rejections.note_unreadable(ref, reason)

    def rejected(self, limit: int) -> list[Rejection]:
        return self.rejections.rejected(limit)

    def newest_sibling(self, ref: BlobRef, suffix: str,
                       where: Callable[[BlobInfo], bool] = lambda _: True) -> BlobInfo | None:
        folder = ref.name.rsplit("/", 1)[0] + "/" if "/" in ref.name else ""
        container = self.blob.get_container_client(ref.container)
        siblings = [blob_info(b) for b in container.walk_blobs(name_starts_with=folder or None, delimiter="/",
                                                               include=["metadata"])
                    if isinstance(b, BlobProperties) and b.name != ref.name and b.name.lower().endswith(suffix)]
        return max((b for b in siblings if where(b)), key=lambda b: (b.last_modified, b.name), default=None)
