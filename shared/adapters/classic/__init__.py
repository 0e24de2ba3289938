"""The `classic` target kind: Studio (classic) as a training service (BES) and a serving target (a predictive web
service's endpoints), over clients of its management API, BES and request-response scoring."""

from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.classic.http import HttpPolicy, StudioHttp

__all__ = ["HttpPolicy", "StudioApiError", "StudioHttp", "TransportError"]
