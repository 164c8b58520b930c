"""Is a Django-Q2 worker alive? (cluster heartbeats are in the broker's stat store)"""

from django.conf import settings
from django.utils import timezone


def worker_status() -> dict:
    if settings.Q_CLUSTER.get("sync"):
        return {"worker": "sync", "worker_alive": True}
    try:
        from django_q.status import Stat

        stats = Stat.get_all()
    except Exception as exc:  # noqa: BLE001 - broker unreachable: report, don't fail
        return {"worker": f"unknown ({exc.__class__.__name__})", "worker_alive": False}
    now = timezone.now()
    alive = [
        s
        for s in stats
        if s.status not in ("Stopped",) and (now - s.timestamp).total_seconds() < 30
    ]
    return {
        "worker": "alive" if alive else "down",
        "worker_alive": bool(alive),
        "clusters": len(alive),
    }
