"""SAS tokens for model blobs: mint (account key, or a user-delegation key under managed identity), parse expiry,
and build the `AzureBlobDataReference` locations Studio (classic) takes.

Tokens are read-only and blob-scoped; HTTPS-only unless the blob endpoint itself is plain http (Azurite).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas

from shared.adapters.classic.models import ResourceLocation


def token_expiry(token: str | None) -> datetime | None:
    """The signed expiry (`se`) of a SAS token, or None when it has none or cannot be read."""
    if not token:
        return None
    values = parse_qs(token.lstrip("?")).get("se")
    if not values:
        return None
    try:
        parsed = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def needs_refresh(token: str | None, margin: timedelta, now: datetime | None = None) -> bool:
    """True when the token is missing, unreadable, expired, expires within `margin`, or cannot read the blob (a
    job's results echo the write-only token the app gave for its outputs when it has no account key)."""
    expiry = token_expiry(token)
    if expiry is None or expiry - margin <= (now or datetime.now(UTC)):
        return True
    permissions = parse_qs((token or "").lstrip("?")).get("sp")
    return permissions is not None and "r" not in permissions[0]


class SasMinter:
    """Mints read-only blob SAS tokens for one storage account."""

    def __init__(self, service: BlobServiceClient, account_key: str | None) -> None:
        self.service = service
        self.account_name = str(service.account_name)
        self._account_key = account_key
        self._delegation: tuple[UserDelegationKey, datetime] | None = None
        self._lock = threading.Lock()

    @property
    def base_location(self) -> str:
        """The blob endpoint with a trailing '/' (without the SDK's query string)."""
        return str(self.service.url).split("?")[0].rstrip("/") + "/"

    def _delegation_key(self, now: datetime, lifetime: timedelta) -> UserDelegationKey:
        with self._lock:
            if self._delegation is None or self._delegation[1] < now + lifetime:
                expiry = now + max(lifetime, timedelta(hours=6))
                key = self.service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
                self._delegation = (key, expiry)
            return self._delegation[0]

    def read_token(self, container: str, blob: str, lifetime: timedelta) -> str:
        """A fresh read-only SAS for one blob, with its leading '?'."""
        return self._token(container, blob, lifetime, BlobSasPermissions(read=True))

    def write_token(self, container: str, blob: str, lifetime: timedelta) -> str:
        """A create/write SAS for one blob (BES outputs when the app has no account key to hand over)."""
        return self._token(container, blob, lifetime, BlobSasPermissions(create=True, write=True))

    def _token(self, container: str, blob: str, lifetime: timedelta, permission: BlobSasPermissions) -> str:
        now = datetime.now(UTC)
        protocol = "https" if self.base_location.startswith("https") else "https,http"
        signer: dict[str, object] = {"account_key": self._account_key} if self._account_key else \
            {"user_delegation_key": self._delegation_key(now, lifetime)}
        token = generate_blob_sas(self.account_name, container, blob, permission=permission,
                                  start=now - timedelta(minutes=5), expiry=now + lifetime, protocol=protocol,
                                  **signer)  # type: ignore[arg-type]
        return "?" + token

    def location(self, relative_location: str, lifetime: timedelta) -> ResourceLocation:
        """The PATCH `Location` of a blob in this account: BaseLocation/RelativeLocation/fresh SasBlobToken."""
        relative = relative_location.lstrip("/")
        container, _, blob = relative.partition("/")
        return ResourceLocation(BaseLocation=self.base_location, RelativeLocation=relative,
                                SasBlobToken=self.read_token(container, blob, lifetime))

    def owns(self, base_location: str) -> bool:
        return base_location.rstrip("/") + "/" == self.base_location
