"""The rejected container on Azure Blob Storage (the storage adapter's part that moves files aside): a copy of each
rejected version under a name of its own, its `.reason.json` beside it (both marked with the version they belong
to), the source deleted only once the copy is complete and unchanged, and an index entry per rejection so the
newest are listed from one page (`shared.ports.blobs.REJECTED_INDEX`)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.errors import AlreadyExists
from shared.ports.blobs import (
    REJECTED_INDEX,
    Rejection,
    decode_metadata,
    encode_metadata,
    rejected_names,
    rejection_index_name,
)
from shared.records import BlobRef

log = logging.getLogger("shared.storage")


class RejectedArea:
    """Moves files into `folder` (the rejected container) and lists what was rejected, newest first."""

    def __init__(self, blob: BlobServiceClient, folder: str, copy_source: Callable[[BlobRef], str]) -> None:
        self.blob, self.folder = blob, folder
        self.copy_source = copy_source  # a URL the service can copy from (with a read SAS)

    def reject(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        """Move a file here (copy, then delete) with `<name>.reason.json` beside it.

        Nothing is lost: each version of a file gets its own name (the plain path when free, else
        `<stem>~<version>.<ext>`), never overwriting an earlier rejection; the source is deleted only once the
        copy is complete, and only if it has not changed since. Idempotent: a retry finds its own copy again.
        """
        source = self.blob.get_blob_client(ref.container, ref.name)
        try:
            props = source.get_blob_properties()
        except ResourceNotFoundError:
            return rejected_names(self.folder, ref, "")[0]  # moved already
        version = str(props.etag).strip('"')
        target = self._copy_aside(ref, version)
        body = dict(reason, source=ref.path, sourceEtag=version, rejectedAt=datetime.now(UTC).isoformat())
        at = self._write_reason(BlobRef(target.container, target.name + ".reason.json"), body, version)
        self._index(target.path, ref.path, str(reason.get("code") or ""), at)
        try:
            source.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            log.warning("%s changed while being rejected; the new version is kept in place", ref.path)
        except ResourceNotFoundError:
            pass
        return target

    def note_unreadable(self, ref: BlobRef, reason: dict[str, Any]) -> BlobRef:
        """For a file that cannot be read back (so neither moved nor deleted): a `.reason.json` here under a name
        that can be, saying where the file is and why it stays there."""
        safe = re.sub(r"[\\\x00-\x1f\x7f]", "_", ref.name)
        safe = "/".join({".": "_dot_", "..": "_dotdot_"}.get(part, part) for part in safe.split("/"))
        note = BlobRef(self.folder, f"{ref.container}/{safe}.reason.json")
        body = dict(reason, source=ref.path, stays=True, rejectedAt=datetime.now(UTC).isoformat())
        at = self._write_reason(note, body, None)
        self._index(note.path, ref.path, str(reason.get("code") or ""), at)
        return note

    def rejected(self, limit: int) -> list[Rejection]:
        """The newest rejections from the first page of the index (its names sort newest first)."""
        container = self.blob.get_container_client(self.folder)
        pages = container.list_blobs(name_starts_with=REJECTED_INDEX, include=["metadata"],
                                     results_per_page=max(1, limit)).by_page()
        out = []
        for blob in next(pages, []):
            meta = decode_metadata(blob.metadata)
            out.append(Rejection(meta.get("path", ""), meta.get("source", ""), meta.get("code", ""),
                                 meta.get("at", "")))
        return out[:limit]

    def _index(self, path: str, source: str, code: str, at: str) -> None:
        """This rejection's index entry (empty; what the listing shows is its metadata); written once."""
        name = rejection_index_name(datetime.fromisoformat(at), path)
        with contextlib.suppress(ResourceExistsError):
            self.blob.get_blob_client(self.folder, name).upload_blob(
                b"", overwrite=False, metadata=encode_metadata({"path": path, "source": source, "code": code,
                                                                "at": at}))

    def _write_reason(self, ref: BlobRef, body: dict[str, Any], version: str | None) -> str:
        """A `.reason.json`, written once, marked with the version it describes: a retry finds the one an earlier
        try wrote (it says the same). For a moved file (`version` given) a reason of another version found there
        is replaced: the file beside it is this version's (its copy was made under that name), so that reason
        described a file that is no longer there. Returns when the rejection was made (the first try's time)."""
        client = self.blob.get_blob_client(ref.container, ref.name)
        data, settings = json.dumps(body, indent=2).encode(), ContentSettings(content_type="application/json")
        metadata = {"rejectedat": str(body["rejectedAt"])} | ({"sourceetag": version} if version is not None else {})
        try:
            client.upload_blob(data, overwrite=False, metadata=metadata, content_settings=settings)
        except ResourceExistsError:
            there = client.get_blob_properties()
            if version is None or (there.metadata or {}).get("sourceetag") == version:
                return str((there.metadata or {}).get("rejectedat") or body["rejectedAt"])
            log.warning("%s described another version of the file; replaced by this rejection's reason", ref.path)
            client.upload_blob(data, overwrite=True, metadata=metadata, content_settings=settings,
                               etag=there.etag, match_condition=MatchConditions.IfNotModified)
        return str(body["rejectedAt"])

    def _version_at(self, ref: BlobRef) -> str | None:
        """The `sourceetag` a blob here is marked with ('' when unmarked), or None when there is none."""
        try:
            props = self.blob.get_blob_client(ref.container, ref.name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return str((props.metadata or {}).get("sourceetag") or "")

    def _copy_aside(self, ref: BlobRef, version: str) -> BlobRef:
        """Copy this version of `ref` to the first free name here (or find where an earlier try put it)."""
        url = self.copy_source(ref)
        for target in rejected_names(self.folder, ref, version):
            if self._version_at(BlobRef(target.container, target.name + ".reason.json")) not in (None, version):
                continue  # the reason file of another version holds this name (its file deleted by hand)
            dest = self.blob.get_blob_client(target.container, target.name)
            try:
                copy = dest.start_copy_from_url(url, metadata=encode_metadata({"sourceetag": version,
                                                                               "source": ref.path}),
                                                match_condition=MatchConditions.IfMissing)
            except ResourceExistsError:
                if self._version_at(target) == version:
                    return target  # an earlier try of this very rejection
                continue  # an earlier rejection of another version: keep it, use the next name
            status = copy.get("copy_status")
            deadline = time.monotonic() + 600
            while status == "pending" and time.monotonic() < deadline:
                time.sleep(0.2)
                status = dest.get_blob_properties().copy.status
            if status != "success":
                raise OSError(f"copying {ref.path} to {target.path} did not complete ({status})")
            return target
        raise AlreadyExists(f"{ref.path}: every rejected/ name for this version is taken")
