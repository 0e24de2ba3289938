"""Clients for Studio (classic): the web-service management API, BES and request-response scoring."""

from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.classic.http import HttpPolicy, StudioHttp

__all__ = ["HttpPolicy", "StudioApiError", "StudioHttp", "TransportError"]
