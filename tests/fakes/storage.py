"""`BlobStore` in memory: versions with etags, create-only writes, rejected/ with versioned names and reason files,
SAS grants that say what they grant (no signature: nothing here checks one). Metadata is held as the service holds
it (ASCII only: a value that is not is refused, as an HTTP header would be), encoded and decoded as the adapter
does."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import AlreadyExists, NotFound, Stale
from shared.ports.blobs import (
    REJECTED_INDEX,
    BlobInfo,
    BlobStore,
    Grant,
    Rejection,
    SasPurpose,
    decode_metadata,
    encode_metadata,
    rejected_names,
    rejection_index_name,
)
from shared.records import BlobRef

BASE = "https://fake.blob.core.windows.net/"
CHUNK = 64 * 1024


@dataclass
class Blob:
    data: bytes
    etag: str
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)


class FakeClock:
    """Last-Modified stamps: whole seconds, as Azure Storage gives them; `tick` moves time on."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class FakeBlobStore(BlobStore):
    def __init__(self, rejected_container: str = "rejected", clock: FakeClock | None = None) -> None:
        self.blobs: dict[tuple[str, str], Blob] = {}
        self.rejected_container = rejected_container
        self.clock = clock or FakeClock()
        self.grants: list[tuple[BlobRef, SasPurpose]] = []
        self._etags = itertools.count(1)
        self._lock = threading.RLock()
        self.listed_pages = 0  # listings of rejected/ (each reads one page)

    # ---- what tests use to arrange ------------------------------------------------------------------------
    def put(self, ref: BlobRef, data: bytes, metadata: dict[str, str] | None = None) -> BlobInfo:
        """Write as a user does: whatever was there is replaced (a new version). Metadata as sent on the wire:
        a value that is not ASCII is refused, as the SDK refuses the header."""
        for value in (metadata or {}).values():
            value.encode("ascii")  # UnicodeEncodeError, as http.client raises for the x-ms-meta-* header
        with self._lock:
            self.blobs[(ref.container, ref.name)] = Blob(data, f'"0x{next(self._etags):08X}"', self.clock.now,
                                                         dict(metadata or {}))
            return self.info(ref)

    def delete(self, ref: BlobRef) -> None:
        with self._lock:
            self.blobs.pop((ref.container, ref.name), None)

    def names(self, container: str) -> list[str]:
        return sorted(n for c, n in self.blobs if c == container)

    # ---- the port -----------------------------------------------------------------------------------------
    def _get(self, ref: BlobRef) -> Blob:
        blob = self.blobs.get((ref.container, ref.name))
        if blob is None:
            raise NotFound(f"{ref.path} does not exist")
        return blob

    def info(self, ref: BlobRef) -> BlobInfo:
        with self._lock:
            blob = self._get(ref)
            return BlobInfo(ref.name, blob.etag, len(blob.data), blob.last_modified, decode_metadata(blob.metadata))

    def exists(self, ref: BlobRef) -> bool:
        return (ref.container, ref.name) in self.blobs

    def chunks(self, ref: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        with self._lock:
            blob = self._get(ref)
            if etag is not None and blob.etag != etag:
                raise Stale(f"{ref.path} changed since it was read")
        for i in range(0, len(blob.data), CHUNK):
            current = self.blobs.get((ref.container, ref.name))
            if current is None:
                raise NotFound(f"{ref.path} does not exist")
            if etag is not None and current.etag != etag:
                raise Stale(f"{ref.path} changed since it was read")
            yield blob.data[i:i + CHUNK]

    def read_bytes(self, ref: BlobRef, limit: int = 16 * 1024 * 1024) -> bytes:
        data = self._get(ref).data
        if len(data) > limit:
            raise ValueError(f"{ref.path} is larger than {limit} bytes")
        return data

    def create(self, ref: BlobRef, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        with self._lock:
            existing = self.blobs.get((ref.container, ref.name))
            if existing is not None:
                if existing.data == data:
                    return False
                raise AlreadyExists(f"{ref.path} exists already with other content")
            self.put(ref, data, encode_metadata(metadata))
            return True

    def reject(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        with self._lock:
            source = self.blobs.get((ref.container, ref.name))
            names = self._rejected_names(ref, source.etag.strip('"') if source else "")
            if source is None:
                return names[0]  # moved already
            version = source.etag.strip('"')
            for target in names:
                reason_ref = BlobRef(target.container, target.name + ".reason.json")
                there, beside = (self.blobs.get((r.container, r.name)) for r in (target, reason_ref))
                if there is None and beside is not None and beside.metadata.get("sourceetag") != version:
                    continue  # the reason file of another version holds this name (its file deleted by hand)
                if there is not None and there.metadata.get("sourceetag") != version:
                    continue  # an earlier rejection of another version: keep it
                if there is None:
                    self.put(target, source.data, encode_metadata({"sourceetag": version, "source": ref.path}))
                at = self.clock.now.isoformat()
                if beside is None or beside.metadata.get("sourceetag") != version:
                    body = dict(reason, source=ref.path, sourceEtag=version, rejectedAt=at)
                    self.put(reason_ref, json.dumps(body).encode(), {"sourceetag": version, "rejectedat": at})
                else:
                    at = beside.metadata.get("rejectedat", at)  # an earlier try's: its index entry
                self._index(target.path, ref.path, str(reason.get("code") or ""), at)
                self.blobs.pop((ref.container, ref.name), None)
                return target
            raise AlreadyExists(f"{ref.path}: every rejected/ name for this version is taken")

    def _rejected_names(self, ref: BlobRef, version: str) -> list[BlobRef]:
        return rejected_names(self.rejected_container, ref, version)

    def note_unreadable(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        note = BlobRef(self.rejected_container, f"{ref.container}/{ref.name.replace(chr(92), '_')}.reason.json")
        with self._lock:
            at = self.clock.now.isoformat()
            if not self.exists(note):
                self.put(note, json.dumps(dict(reason, source=ref.path, stays=True, rejectedAt=at)).encode(),
                         {"rejectedat": at})
            self._index(note.path, ref.path, str(reason.get("code") or ""),
                        self.blobs[(note.container, note.name)].metadata.get("rejectedat", at))
        return note

    def _index(self, path: str, source: str, code: str, at: str) -> None:
        entry = BlobRef(self.rejected_container, rejection_index_name(datetime.fromisoformat(at), path))
        if not self.exists(entry):
            self.put(entry, b"", encode_metadata({"path": path, "source": source, "code": code, "at": at}))

    def newest_sibling(self, ref: BlobRef, suffix: str,
                       where: Callable[[BlobInfo], bool] = lambda _: True) -> BlobInfo | None:
        folder = ref.name.rsplit("/", 1)[0] + "/" if "/" in ref.name else ""
        siblings = [BlobRef(c, n) for c, n in list(self.blobs) if c == ref.container and n != ref.name
                    and n.startswith(folder) and "/" not in n[len(folder):] and n.lower().endswith(suffix)]
        infos = [i for i in (self.info(s) for s in siblings) if where(i)]
        return max(infos, key=lambda b: (b.last_modified, b.name), default=None)

    def rejected(self, limit: int) -> list[Rejection]:
        """One page of the index (its names sort newest first), as the service lists it."""
        self.listed_pages += 1
        entries = [n for n in self.names(self.rejected_container) if n.startswith(REJECTED_INDEX)][:limit]
        metas = [decode_metadata(self.blobs[(self.rejected_container, n)].metadata) for n in entries]
        return [Rejection(m.get("path", ""), m.get("source", ""), m.get("code", ""), m.get("at", "")) for m in metas]

    def grant(self, ref: BlobRef, purpose: SasPurpose) -> Grant:
        self.grants.append((ref, purpose))
        permission = "cw" if purpose is SasPurpose.JOB_OUTPUT else "r"
        expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Grant(BASE, ref.path, f"?sp={permission}&sr=b&se={expiry}&sig=fake")

    def owns(self, base: str) -> bool:
        return base.rstrip("/") + "/" == BASE

    @property
    def base(self) -> str:
        return BASE
