"""SAS tokens: minting (account key, or a user-delegation key under a managed identity), reading a token's expiry,
and the one policy that says, for each purpose a token is minted for, its permissions and its lifetime.

Tokens are blob-scoped; HTTPS-only unless the blob endpoint itself is plain http (Azurite).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas

from shared.ports.blobs import Grant, SasPurpose
from shared.settings import Settings

COPY_ASIDE_MINUTES = 15.0  # over the 10 minutes a copy to rejected/ is waited for


@dataclass(frozen=True)
class SasPolicy:
    """Every lifetime and permission of the app's SAS tokens, by purpose - the one place they are chosen."""

    serve_model: timedelta  # RETRAIN_SAS_MINUTES: how long a scoring service may read a model it was given
    job: timedelta  # RETRAIN_JOB_DEADLINE_MINUTES + 1 h: a job's inputs and outputs, for as long as it may run
    copy_aside: timedelta
    refresh_margin: timedelta  # RETRAIN_SAS_REFRESH_MARGIN_MINUTES: a token with less life left is not reused

    @classmethod
    def from_settings(cls, settings: Settings) -> SasPolicy:
        return cls(serve_model=timedelta(minutes=settings.sas_minutes),
                   job=timedelta(minutes=settings.job_deadline_minutes + 60),
                   copy_aside=timedelta(minutes=COPY_ASIDE_MINUTES),
                   refresh_margin=timedelta(minutes=settings.sas_refresh_margin_minutes))

    def lifetime(self, purpose: SasPurpose) -> timedelta:
        return {SasPurpose.SERVE_MODEL: self.serve_model, SasPurpose.JOB_INPUT: self.job,
                SasPurpose.JOB_OUTPUT: self.job, SasPurpose.COPY_ASIDE: self.copy_aside}[purpose]

    @staticmethod
    def permission(purpose: SasPurpose) -> BlobSasPermissions:
        """Read, except a job's outputs: create and write (never read, delete or list)."""
        if purpose is SasPurpose.JOB_OUTPUT:
            return BlobSasPermissions(create=True, write=True)
        return BlobSasPermissions(read=True)


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
    """Mints blob SAS tokens for one storage account, as the policy says."""

    def __init__(self, service: BlobServiceClient, account_key: str | None, policy: SasPolicy) -> None:
        self.service = service
        self.policy = policy
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

    def grant(self, container: str, blob: str, purpose: SasPurpose) -> Grant:
        """A token for one blob with the permissions and lifetime of `purpose`."""
        now = datetime.now(UTC)
        lifetime = self.policy.lifetime(purpose)
        protocol = "https" if self.base_location.startswith("https") else "https,http"
        signer: dict[str, object] = {"account_key": self._account_key} if self._account_key else \
            {"user_delegation_key": self._delegation_key(now, lifetime)}
        token = generate_blob_sas(self.account_name, container, blob, permission=self.policy.permission(purpose),
                                  start=now - timedelta(minutes=5), expiry=now + lifetime, protocol=protocol,
                                  **signer)  # type: ignore[arg-type]
        return Grant(self.base_location, f"{container}/{blob}", "?" + token)

    def owns(self, base_location: str) -> bool:
        return base_location.rstrip("/") + "/" == self.base_location
