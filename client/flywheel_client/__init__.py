"""Flywheel client: record agent runs, post feedback, recall context, propose learnings."""

from flywheel_client.client import (
    ApiError,
    Context,
    Flywheel,
    FlywheelError,
    RunRecorder,
    TransportError,
)

__all__ = [
    "ApiError",
    "Context",
    "Flywheel",
    "FlywheelError",
    "RunRecorder",
    "TransportError",
]
__version__ = "0.1.0"
