"""Reflectors turn runs into lessons: one interface (`base.Reflector`), an offline
deterministic implementation, a Claude one and one for OpenAI-compatible servers;
`reflector_get()` picks by settings."""

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
    """FLYWHEEL_REFLECTOR (offline | claude | openai); when it is not set, Claude if
    ANTHROPIC_API_KEY is set, else the offline reflector."""
    choice = getattr(settings, "FLYWHEEL_REFLECTOR", "") or (
        "claude" if settings.ANTHROPIC_API_KEY else "offline"
    )
    if choice == "claude":
        from learning.reflectors.claude import ClaudeReflector

        return ClaudeReflector()
    if choice == "openai":
        from learning.reflectors.openai_compat import OpenAICompatibleReflector

        return OpenAICompatibleReflector()
    from learning.reflectors.offline import OfflineReflector

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
