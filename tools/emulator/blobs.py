"""Storage access for the emulator: connection strings, blob read/write, read-only SAS minting, SAS URL fetches.

BES reads inputs and writes outputs through the connection strings a job names (as the real service did); PATCH
downloads a model through `BaseLocation + RelativeLocation + SasBlobToken` with a plain HTTP GET, so storage itself
checks the token. Fetches of the same SAS URL are shared for a few seconds (a fan-out patches many endpoints with
one model URL), and the token's expiry is still checked locally on every use.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient


class BlobFetchError(Exception):
    """A model could not be fetched through its SAS location; `reason` is one of the names below."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason  # "expired" | "auth" | "missing" | "unavailable"
        super().__init__(message)


@dataclass(frozen=True)
class StorageAccount:
    """The parts of a storage connection string the emulator needs."""

    account_name: str
    account_key: str | None
    blob_endpoint: str  # no trailing slash

    @classmethod
    def parse(cls, connection_string: str) -> StorageAccount:
        """Read by the storage SDK itself (`UseDevelopmentStorage=true` included); ValueError when malformed."""
        from azure.storage.blob import BlobServiceClient as SyncClient

        client = SyncClient.from_connection_string(connection_string.strip())
        if not client.account_name:
            raise ValueError("the connection string has no AccountName")
        return cls(client.account_name, getattr(client.credential, "account_key", None),
                   client.url.split("?")[0].rstrip("/"))

    @property
    def base_location(self) -> str:
        """BaseLocation as BES reports it: the blob endpoint with a trailing '/'."""
        return self.blob_endpoint + "/"

    def read_sas(self, relative_location: str, lifetime: timedelta) -> str:
        """A fresh read-only SAS for one blob, with its leading '?'."""
        if not self.account_key:
            raise ValueError("the connection string has no AccountKey to sign a SAS with")
        container, _, blob = relative_location.partition("/")
        now = datetime.now(UTC)
        token = generate_blob_sas(self.account_name, container, blob, account_key=self.account_key,
                                  permission=BlobSasPermissions(read=True), start=now - timedelta(minutes=5),
                                  expiry=now + lifetime,
                                  protocol="https" if self.blob_endpoint.startswith("https") else "https,http")
        return "?" + token


def split_relative(relative_location: str) -> tuple[str, str]:
    container, sep, blob = relative_location.lstrip("/").partition("/")
    if not sep or not container or not blob:
        raise ValueError(f"'{relative_location}' is not of the form <container>/<blob>")
    return container, blob


class BlobStore:
    """Async blob access through connection strings (one client per distinct connection string)."""

    def __init__(self) -> None:
        self._clients: dict[str, BlobServiceClient] = {}

    def client(self, connection_string: str) -> BlobServiceClient:
        found = self._clients.get(connection_string)
        if found is None:
            found = BlobServiceClient.from_connection_string(connection_string)
            self._clients[connection_string] = found
        return found

    async def read(self, connection_string: str, relative_location: str) -> bytes:
        container, blob = split_relative(relative_location)
        downloader = await self.client(connection_string).get_blob_client(container, blob).download_blob()
        return await downloader.readall()

    async def write(self, connection_string: str, relative_location: str, data: bytes,
                    content_type: str = "application/octet-stream") -> None:
        from azure.storage.blob import ContentSettings

        container, blob = split_relative(relative_location)
        service = self.client(connection_string)
        with contextlib.suppress(ResourceExistsError):
            await service.create_container(container)
        await service.get_blob_client(container, blob).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    async def exists(self, connection_string: str, relative_location: str) -> bool:
        container, blob = split_relative(relative_location)
        try:
            await self.client(connection_string).get_blob_client(container, blob).get_blob_properties()
            return True
        except ResourceNotFoundError:
            return False

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def sas_expiry(token: str) -> datetime | None:
    """The `se` (signed expiry) of a SAS token, or None when it has none."""
    values = parse_qs(token.lstrip("?")).get("se")
    if not values:
        return None
    text = values[0].replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


SAS_PUBLIC_FIELDS = ("sv", "sr", "sp", "spr", "skoid", "sktid", "skv", "sks", "skt", "ske", "st", "se")


class SasFetcher:
    """GET a blob through a SAS URL; identical URLs fetched within `ttl` seconds share one download."""

    def __init__(self, session_factory: type[aiohttp.ClientSession] = aiohttp.ClientSession,
                 ttl: float = 5.0, max_entries: int = 256) -> None:
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[str, tuple[float, asyncio.Future[bytes]]] = {}
        self.seen: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)

    def _note(self, token: str) -> None:
        """Keep what kind of SAS this was (field names, non-secret fields; never the signature)."""
        values = parse_qs(token.lstrip("?"))
        self.seen.append({"fields": sorted(values), **{k: values[k][0] for k in SAS_PUBLIC_FIELDS if k in values}})

    async def fetch(self, url: str, token: str) -> bytes:
        self._note(token)
        expiry = sas_expiry(token)
        if expiry is not None and expiry <= datetime.now(UTC):
            raise BlobFetchError("expired", f"the SAS token expired at {expiry.isoformat()}")
        if self._ttl <= 0:
            return await self._download(url)
        now = time.monotonic()
        hit = self._cache.get(url)
        if hit is not None and now - hit[0] < self._ttl:
            return await asyncio.shield(hit[1])
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if len(self._cache) >= self._max:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self._ttl}
        self._cache[url] = (now, future)
        try:
            data = await self._download(url)
        except BaseException as exc:
            self._cache.pop(url, None)
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        future.set_result(data)
        return data

    async def _download(self, url: str) -> bytes:
        if self._session is None:
            self._session = self._session_factory(timeout=aiohttp.ClientTimeout(total=60, connect=5))
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise BlobFetchError("missing", f"'{scheme}' is not a blob URL scheme")
        try:
            async with self._session.get(url) as resp:
                if resp.status == 200:
                    return await resp.read()
                text = await resp.text()
                if resp.status == 404:
                    raise BlobFetchError("missing", "the blob does not exist")
                if resp.status in (401, 403):
                    raise BlobFetchError("auth", "storage refused the SAS token (wrong signature, "
                                                 "permissions or scope)" + _storage_code(text))
                raise BlobFetchError("unavailable", f"storage answered HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise BlobFetchError("unavailable", f"storage could not be reached: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _storage_code(xml_text: str) -> str:
    start = xml_text.find("<Code>")
    end = xml_text.find("</Code>")
    return f" ({xml_text[start + 6:end]})" if 0 <= start < end else ""
