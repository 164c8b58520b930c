"""Lessons from the conversation itself, for agents that talk with a user: the agent
asked for something, the user said they could not give it, and the agent asked for it
again instead of finding it another way — a loop in the conversation, the counterpart
of the same failing call repeated. Plain English conversation patterns, no domain."""

import re

from learning.reflectors.base import Lesson

from .context import Context, strategy
from .parsing import AGENT_ROLES

_CANNOT = re.compile(
    r"\b(?:i\s+)?(?:don[’']?t|do not|can[’']?t|cannot|couldn[’']?t|could not|didn[’']?t)\s+"
    r"(?:have|remember|recall|find|know|locate)\b|\bno idea\b|\bnot sure (?:what|of)\b|"
    r"\bleft it\b|\bforgot\b",
    re.I,
)
# What the agent asked for: "provide your user ID and the reservation ID", "I need the
# order number", "what is your email address".
_FIELD = re.compile(
    r"\b(?:your|the)\s+((?:[a-z]+\s){0,2}?(?:id|number|code|email(?: address)?|"
    r"address|name|date of birth|password|details|reference))\b",
    re.I,
)
_ASKS = re.compile(
    r"\?|\b(?:please provide|provide|i need|i'll need|i will need|share)\b", re.I
)


def _fields(text: str) -> list[str]:
    return [" ".join(m.group(1).split()) for m in _FIELD.finditer(text)]


def _asked_again(ctx: Context) -> tuple[str, list[int]] | None:
    """(the field, the steps): the user said they could not give a field the agent
    had asked for, and the agent asked for it again and made no successful call after
    that (it never found the value another way)."""
    messages = ctx.me.messages
    for i, message in enumerate(messages):
        if message.role in AGENT_ROLES or not _CANNOT.search(message.text):
            continue
        said = message.text.lower()
        before = [
            m for m in messages[:i] if m.role in AGENT_ROLES and _ASKS.search(m.text)
        ]
        if not before:
            continue
        wanted = [f for f in _fields(before[-1].text) if f.lower() in said]
        if not wanted:
            continue
        field = max(wanted, key=len)
        again = [
            m
            for m in messages[i + 1 :]
            if m.role in AGENT_ROLES
            and _ASKS.search(m.text)
            and field.lower() in m.text.lower()
        ]
        looked = any(c.step > message.step and not c.failed for c in ctx.me.calls)
        if again and not looked:  # asked again, and never looked it up: stuck
            return field, [before[-1].step, message.step, again[0].step]
    return None


def conversation_lessons(ctx: Context) -> list[Lesson]:
    if not ctx.failed:
        return []
    found = _asked_again(ctx)
    if found is None:
        return []
    field, steps = found
    return [
        strategy(
            key=f"ask-again|{field.lower()}",
            when=f"the user cannot give the `{field}` you asked for",
            directive=f"find the `{field}` another way, with the tools you have, instead of asking for it again",
            why=(
                f"step {steps[1]}: the user said they could not give the {field}; the "
                f"agent asked for it again at step {steps[2]}"
            ),
            steps=steps,
            base=0.6,
            provenance="failure",
            root_cause=True,
        )
    ]
