"""Rate limits: API writes per token, console logins per user and per address.

**Writes.** Every write through the API (POST, PUT, PATCH, DELETE: runs and batches,
step appends, completions, feedback, proposals, review actions, OTel traces, playbook
edits …) counts against one limit per API token, ``FLYWHEEL_INGEST_RATE`` ("6000/min"
by default; "off" disables it); over it the answer is 429 with a Retry-After header.
Reads are never counted.

**Logins.** A console (or Django admin) login is refused with "Too many attempts, try
again in N min" once a user name has failed ``FLYWHEEL_LOGIN_USER_FAILURES`` times (5)
or a client address ``FLYWHEEL_LOGIN_ADDRESS_FAILURES`` times (20) within
``FLYWHEEL_LOGIN_WINDOW`` seconds (900) of its first failure; the password is then not
checked at all. A successful login clears the user's count.

Counts live in the cache named by ``FLYWHEEL_THROTTLE_CACHE``. Django's default
local-memory cache is per process, so with N web processes a token may write up to N
times the rate (and a login be tried N times as often); set
``FLYWHEEL_CACHE_URL=redis://…`` to share one count between processes and machines.
If the cache is down, requests pass (logged): an outage must not take ingest or the
console down.
"""

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from learning.models import ApiToken

logger = logging.getLogger(__name__)

DISABLED = {"", "0", "off", "none", "false"}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _cache():
    return caches[getattr(settings, "FLYWHEEL_THROTTLE_CACHE", "default")]


class IngestRateThrottle(SimpleRateThrottle):
    """Throttles every write of an API token (one count per token for all views);
    reads pass freely. The default throttle of every API view (REST_FRAMEWORK)."""

    scope = "ingest"
    methods = WRITE_METHODS

    def __init__(self):
        self.cache = _cache()
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


# The name says what it counts now; IngestRateThrottle stays for existing imports.
WriteRateThrottle = IngestRateThrottle


# --- console logins -----------------------------------------------------------------


def _login_window() -> int:
    return int(getattr(settings, "FLYWHEEL_LOGIN_WINDOW", 900))


def _login_keys(username: str, address: str) -> list[tuple[str, int]]:
    """(cache key, limit) for the user name and the client address."""
    user = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    where = hashlib.sha256(address.encode()).hexdigest()[:32]
    return [
        (
            f"login:user:{user}",
            int(getattr(settings, "FLYWHEEL_LOGIN_USER_FAILURES", 5)),
        ),
        (
            f"login:addr:{where}",
            int(getattr(settings, "FLYWHEEL_LOGIN_ADDRESS_FAILURES", 20)),
        ),
    ]


def _count_up(cache, key: str, window: int) -> int:
    """Add one to a count that lives `window` seconds from its first increment."""
    if cache.add(key, 0, timeout=window):
        cache.set(f"{key}:until", time.time() + window, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        cache.set(f"{key}:until", time.time() + window, timeout=window)
        return 1


def _count_down(cache, key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:
        pass


def login_attempt_begin(*, username: str, address: str) -> int | None:
    """Count a login attempt before its password is checked. None: go ahead (and
    report the outcome with login_attempt_succeeded if it succeeds); a number: the
    seconds to wait, the attempt is refused and not counted.

    Counting first, with the cache's atomic increment, means parallel guesses cannot
    slip past the limit between a check and an update."""
    try:
        cache, window = _cache(), _login_window()
        keys = _login_keys(username, address)
        counts = [(key, limit, _count_up(cache, key, window)) for key, limit in keys]
        over = [key for key, limit, count in counts if count > limit]
        if not over:
            return None
        for key, _limit, _count in counts:
            _count_down(cache, key)  # a refused attempt guessed nothing
        until = max(float(cache.get(f"{key}:until") or 0) for key in over)
        return max(1, math.ceil(until - time.time()))
    except Exception:  # noqa: BLE001 - a cache outage must not lock everyone out
        logger.warning("login throttle cache unavailable; allowing", exc_info=True)
        return None


def login_attempt_succeeded(*, username: str, address: str) -> None:
    """A successful login clears the user's count (and takes its attempt back
    from the address's)."""
    try:
        cache = _cache()
        (user_key, _), (address_key, _) = _login_keys(username, address)
        cache.delete_many([user_key, f"{user_key}:until"])
        _count_down(cache, address_key)
    except Exception:  # noqa: BLE001
        logger.warning("login throttle cache unavailable", exc_info=True)


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or behind a reverse proxy the last entry
    of the header named by FLYWHEEL_CLIENT_ADDRESS_HEADER (e.g. X-Forwarded-For: the
    address the proxy itself saw)."""
    header = str(getattr(settings, "FLYWHEEL_CLIENT_ADDRESS_HEADER", "") or "")
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        last = value.split(",")[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR", "") or "unknown"
