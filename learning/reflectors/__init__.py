"""Reflectors turn runs into lessons: one interface (`base.Reflector`), an offline
deterministic implementation and a Claude one; `reflector_get()` picks by settings."""

from django.conf import settings

from learning.reflectors.base import (
    FeedbackView,
    Lesson,
    RecalledView,
    ReflectionResult,
    Reflector,
    RunView,
    StepView,
)


def reflector_get() -> Reflector:
    """Claude when ANTHROPIC_API_KEY is set, else the offline reflector."""
    from learning.reflectors.offline import OfflineReflector

    if settings.ANTHROPIC_API_KEY:
        from learning.reflectors.claude import ClaudeReflector

        return ClaudeReflector()
    return OfflineReflector()


__all__ = [
    "FeedbackView",
    "Lesson",
    "RecalledView",
    "ReflectionResult",
    "Reflector",
    "RunView",
    "StepView",
    "reflector_get",
]
