"""The blob storage port: the app's containers - streaming reads, create-only writes, moving a file aside to
rejected/ with its reason, and the one SAS policy (what each grant is for, and for how long)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote

from shared.records import BlobRef

# Metadata values travel as HTTP headers (x-ms-meta-*), which must be ASCII: every value the app writes is
# percent-encoded (non-ASCII, control characters and '%' itself) and decoded where read, so any blob name can be
# put into metadata. Both implementations of the port do this.
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
# rejected/ holds `<container>/<name>` (a moved file) and `<container>/<name>.reason.json` (its reason); beside
# them, one empty blob per rejection under this prefix, named so that a listing returns the newest first (the
# status page reads one page of it, never the whole container). No container name can start with '_'.
REJECTED_INDEX = "_index/"


def encode_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {key: quote(value, safe=_METADATA_SAFE) for key, value in (metadata or {}).items()}


def decode_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {key: unquote(value) for key, value in (metadata or {}).items()}


def rejection_index_name(at: datetime, path: str) -> str:
    """The index entry of a rejection made `at` to `path` (in rejected/): newer sorts first (an inverted time in
    milliseconds), the path's hash breaks ties; the same rejection always gets the same name (a retry finds it)."""
    inverted = 10**13 - 1 - int(at.timestamp() * 1000)
    return f"{REJECTED_INDEX}{inverted:013d}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Rejection:
    """A rejection as the index records it: where the file (or a note about it) is in rejected/, where it came
    from, why and when."""

    path: str  # <rejected container>/<container>/<name> (for a file that stays put: its note's path)
    source: str  # <container>/<name> it came from
    code: str
    at: str  # ISO 8601


def rejected_names(folder: str, ref: BlobRef, version: str) -> list[BlobRef]:
    """Where a version of `ref` may go in rejected/ (`folder`), in order: its own path, else a name of that
    version's own (`<stem>~<hash>.<ext>`). A name ending in `.reason.json` never takes its own path: that is the
    place of another file's reason."""
    stem, dot, ext = ref.name.rpartition(".")
    tag = hashlib.sha256(version.encode()).hexdigest()[:12]
    versioned = f"{stem}~{tag}.{ext}" if dot and "/" not in ext else f"{ref.name}~{tag}"
    plain = [] if ref.name.endswith(".reason.json") else [BlobRef(folder, f"{ref.container}/{ref.name}")]
    return [*plain, BlobRef(folder, f"{ref.container}/{versioned}")]


@dataclass(frozen=True)
class BlobInfo:
    """A blob version: its etag, size, Last-Modified and metadata."""

    name: str
    etag: str
    size: int
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)


class SasPurpose(Enum):
    """Why a SAS token is minted. Each purpose has its permissions and lifetime in one place: the storage
    adapter's `SasPolicy`."""

    SERVE_MODEL = "serve-model"  # a scoring service reads a model it is told to serve (read)
    JOB_INPUT = "job-input"  # a training job reads its data (read)
    JOB_OUTPUT = "job-output"  # a training job writes its model or evaluation (create, write)
    COPY_ASIDE = "copy-aside"  # the storage service copies a rejected file to rejected/ (read)


@dataclass(frozen=True)
class Grant:
    """A blob-scoped SAS grant: where the blob is and the token (a secret: never logged or stored)."""

    base: str  # the blob endpoint, ending in '/'
    path: str  # <container>/<name>
    token: str  # '?...'


class BlobStore(ABC):
    """The app's storage account. Errors: NotFound, AlreadyExists, Stale (`shared.errors`)."""

    @abstractmethod
    def info(self, ref: BlobRef) -> BlobInfo:
        """The blob's current version (NotFound)."""

    @abstractmethod
    def exists(self, ref: BlobRef) -> bool: ...

    @abstractmethod
    def chunks(self, ref: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        """The blob's bytes in chunks, pinned to `etag` when given (Stale when that version is gone)."""

    @abstractmethod
    def read_bytes(self, ref: BlobRef, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob whole (ValueError past `limit`)."""

    @abstractmethod
    def create(self, ref: BlobRef, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """Write a new blob, never over another: True when written, False when the same bytes are there already
        (a retried upload); AlreadyExists for different content."""

    @abstractmethod
    def reject(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        """Move a file to rejected/ (copy, then delete if unchanged) with `<name>.reason.json` beside it; each
        version gets its own name there, and a name is taken while either its file or its reason file belongs to
        another version (a reason file always describes the file beside it); a retry finds its own copy; the
        rejection is indexed (see `rejected`). Returns where it went."""

    @abstractmethod
    def note_unreadable(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        """For a file that cannot be read back: a reason file in rejected/ saying where it is and why it stays
        (indexed like a rejection)."""

    @abstractmethod
    def newest_sibling(self, ref: BlobRef, suffix: str,
                       where: Callable[[BlobInfo], bool] = lambda _: True) -> BlobInfo | None:
        """The newest other blob ending in `suffix` in `ref`'s folder (not below) for which `where` holds, by
        (Last-Modified, name)."""

    @abstractmethod
    def rejected(self, limit: int) -> list[Rejection]:
        """The `limit` newest rejections, newest first, from the index alone (one listing page: the size of
        rejected/ does not matter). Files rejected before the index existed are not listed."""

    @abstractmethod
    def grant(self, ref: BlobRef, purpose: SasPurpose) -> Grant:
        """A SAS for one blob, with the permissions and lifetime of `purpose`."""

    @abstractmethod
    def owns(self, base: str) -> bool:
        """Whether `base` is this account's blob endpoint."""

    @property
    @abstractmethod
    def base(self) -> str:
        """This account's blob endpoint, ending in '/'."""

    def read_evaluation(self, ref: BlobRef, required: Iterable[str] = ()) -> dict[str, float]:
        """A run's evaluation CSV as metric -> value (DataRejected when it has none usable, or lacks one of
        `required`)."""
        from shared.validation import evaluation_metrics

        return evaluation_metrics(self.read_bytes(ref, limit=1024 * 1024), required)
