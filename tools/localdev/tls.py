"""A throw-away certificate authority and a loopback server certificate (made with trustme) for the identity-mode
stack: Azurite's OAuth mode and bearer tokens need HTTPS, so Azurite and the emulator serve it, and every local
process trusts the CA through `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class LocalTls:
    ca: Path  # the CA certificate to trust (PEM)
    cert: Path  # the server certificate chain for 127.0.0.1 / localhost (PEM)
    key: Path  # its private key (PEM)

    @classmethod
    def make(cls, folder: Path) -> LocalTls:
        """A new CA and server certificate in `folder` (reused when they are there from an earlier run)."""
        folder.mkdir(parents=True, exist_ok=True)
        tls = cls(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
        if all(p.exists() for p in (tls.ca, tls.cert, tls.key)):
            return tls
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(tls.ca))
        server.private_key_pem.write_to_path(str(tls.key))
        tls.key.chmod(0o600)
        tls.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        return tls

    def environ(self) -> dict[str, str]:
        """What makes requests (REQUESTS_CA_BUNDLE), Python's ssl / aiohttp (SSL_CERT_FILE) and Node - Azurite,
        which reads a copy's source URL from itself - (NODE_EXTRA_CA_CERTS) trust the CA."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca), "SSL_CERT_FILE": str(self.ca), "NODE_EXTRA_CA_CERTS": str(self.ca)}
