"""Per-token rate limits on ingest: too many posts get 429 with a Retry-After header.

The limit is ``FLYWHEEL_INGEST_RATE`` ("1200/min" by default; "off" disables it),
counted per API token over a sliding window in the cache named by
``FLYWHEEL_THROTTLE_CACHE``. Django's default local-memory cache is per process, so
with N web processes a token may post up to N times the rate; set
``FLYWHEEL_CACHE_URL=redis://…`` to share one count between processes and machines.
"""

import logging

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from learning.models import ApiToken

logger = logging.getLogger(__name__)

DISABLED = {"", "0", "off", "none", "false"}


class IngestRateThrottle(SimpleRateThrottle):
    """Throttles POSTs (the ingest side of a view) per API token; reads pass freely."""

    scope = "ingest"
    methods = frozenset({"POST"})

    def __init__(self):
        self.cache = caches[getattr(settings, "FLYWHEEL_THROTTLE_CACHE", "default")]
        super().__init__()

    def get_rate(self) -> str | None:
        # Read per request (not frozen at import), so a deployment and the tests can
        # change it through settings.
        rate = str(getattr(settings, "FLYWHEEL_INGEST_RATE", "") or "").strip()
        return None if rate.lower() in DISABLED else rate

    def parse_rate(self, rate):
        if rate is None:
            return (None, None)
        try:
            num, period = rate.split("/")
            # "1200/min", "20/s", "50000/hour", "5/10s": an optional multiplier
            # before the unit letter.
            digits = "".join(ch for ch in period if ch.isdigit())
            unit = period[len(digits) :][:1]
            duration = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * int(digits or 1)
            return (int(num), duration)
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"FLYWHEEL_INGEST_RATE must look like '1200/min' or '20/s', got {rate!r}"
            ) from exc

    def get_cache_key(self, request, view) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return (
                None  # unauthenticated requests are refused before they cost anything
            )
        return f"throttle:{self.scope}:{token.pk}"

    def allow_request(self, request, view) -> bool:
        if request.method not in self.methods:
            return True
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - a cache outage must not take ingest down
            logger.warning(
                "ingest throttle cache unavailable; allowing the request", exc_info=True
            )
            return True
