"""Memories: preferences a user states as lasting ("I always fly aisle", "I prefer
email"), never answers to a question or one-time choices ("I'd prefer the gift card
this time", "No, I don't want insurance"); and durable facts about the
records a run changed, as they stood at the END of the run (the record shown after the
last call that touched it), citing that step. Facts from a record read before a later
change are stale and are not made."""

import re

from learning.reflectors.base import Lesson

from .context import Context
from .parsing import Call, Message, norm_value

_LASTING = re.compile(
    r"\b(?:i|we)\s+(?:always|usually|generally|normally|never)\b|"
    r"\b(?:i|we)\s+(?:always\s+|usually\s+|generally\s+)?prefer\b|"
    r"\bmy (?:preference|preferred)\b|\bplease (?:always|never)\b",
    re.I,
)
_ONE_TIME = re.compile(
    r"\b(?:this time|for (?:this|that) (?:one|trip|order|booking|flight|request)|"
    r"today|right now|for now|never ?mind|anymore|instead)\b",
    re.I,
)
_ANSWER_OPENING = re.compile(
    r"^\s*(?:yes|yeah|yep|no|nope|nah|sure|ok(?:ay)?|actually|fine|correct|right)\b",
    re.I,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# A clause joined before the preference ("I'll depart on May 20, and I prefer …") and
# a consequence after it ("…, so I'd like to choose Flight HAT072") belong to this run,
# not to the preference.
_JOINED_BEFORE = re.compile(r"[,;]\s*(?:and|but)\s|;\s*", re.I)
_CONSEQUENCE_AFTER = re.compile(r",?\s(?:so|and so|which is why|therefore)\s", re.I)
_CONDITION_OPENING = re.compile(
    r"^\s*(?:when|whenever|if|unless|for|on|as|while|after|before)\b", re.I
)
MAX_FILLER_WORDS = 4
MAX_FACT_FIELDS = 6


def _asked(ctx: Context, message: Message) -> bool:
    """The message answers a question the agent had just asked."""
    before = [m for m in ctx.me.messages if m.step < message.step]
    return (
        bool(before)
        and before[-1].role != message.role
        and "?" in before[-1].text[-200:]
    )


def preference_clause(sentence: str) -> str:
    """The clause of `sentence` that states the lasting preference: without a clause
    joined before it, a short opener ("One last thing, …") or a consequence after it.
    A condition that opens the sentence ("When I fly, I always …") is kept."""
    match = _LASTING.search(sentence)
    if match is None:
        return sentence
    start, end = 0, len(sentence)
    joins = [j for j in _JOINED_BEFORE.finditer(sentence, 0, match.start())]
    if joins:
        start = joins[-1].end()
    else:
        head = sentence[: match.start()]
        if (
            head.rstrip().endswith(",")
            and len(head.split()) <= MAX_FILLER_WORDS
            and not _CONDITION_OPENING.match(head)
        ):
            start = match.start()
    after = _CONSEQUENCE_AFTER.search(sentence, match.end())
    if after is not None:
        end = after.start()
    clause = sentence[start:end].strip().rstrip(",;")
    if not clause:
        return sentence
    clause = clause[0].upper() + clause[1:]
    return clause if clause[-1] in ".!?" else clause + "."


def _preferences(ctx: Context) -> list[Lesson]:
    who = ctx.run.user_id
    lessons = []
    for message in ctx.me.user_messages:
        answering = _asked(ctx, message)
        for sentence in _SENTENCE.split(message.text):
            sentence = sentence.strip()
            if len(sentence) < 12 or not _LASTING.search(sentence):
                continue
            if _ONE_TIME.search(sentence) or "###" in sentence:
                continue
            if answering and _ANSWER_OPENING.match(sentence):
                continue  # "No, I never want insurance" answers the question asked
            sentence = preference_clause(sentence)
            lessons.append(
                Lesson(
                    kind="preference",
                    content=f"{who or 'The user'} prefers: “{sentence[:200]}”",
                    rationale=f"Stated by the user at step {message.step}.",
                    confidence=0.6,
                    step_indexes=[message.step],
                    key=f"preference {who} {sentence.lower()}",
                    user_id=who,
                    memory_scope="user" if who else "namespace",
                    provenance="success" if ctx.run.succeeded else "failure",
                )
            )
    return lessons[:3]


def _identity(call: Call, record: dict) -> tuple[str, str] | None:
    """The record's id field whose value the call named (what the record is of)."""
    named = {norm_value(v) for v in call.args.values() if isinstance(v, str)}
    for key, value in record.items():
        if (key == "id" or key.endswith("_id")) and isinstance(value, str):
            if norm_value(value) in named or key != "user_id" and len(record) > 3:
                return key, value
    return None


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _item_text(item) -> str:
    """A record in a list, by its identifying fields (numbers, ids, names)."""
    if not isinstance(item, dict):
        return str(item)
    keys = [k for k in item if k.endswith(("_number", "_id", "id", "name"))]
    return " ".join(
        str(item[k])
        for k in keys or list(item)[:2]
        if not isinstance(item[k], (dict, list))
    )


def _field_text(key: str, value) -> str:
    if isinstance(value, list):
        return f"{key.replace('_', ' ')} " + ", ".join(_item_text(v) for v in value[:4])
    return f"{key.replace('_', ' ')} {value}"


def _fields(record: dict, id_key: str, before: dict | None) -> list[str]:
    """What the fact says: the fields the run changed first (what is new; a changed
    list by its items' identifying fields), then the record's other short fields, up
    to MAX_FACT_FIELDS."""
    changed, rest = [], []
    for key, value in record.items():
        if key in (id_key, "user_id") or value in (None, "", []):
            continue
        is_new = before is not None and before.get(key) != value
        if isinstance(value, dict) or (isinstance(value, list) and not is_new):
            continue
        old = before.get(key) if before is not None else None
        if (
            isinstance(value, list)
            and isinstance(old, list)
            and value[: len(old)] == old
        ):
            continue  # a log that only grew (a history), not the record's state
        text = _field_text(key, value)
        if len(text) > 120 or (not isinstance(value, list) and len(str(value)) > 40):
            continue
        if isinstance(value, str) and _TIMESTAMP.match(value):
            continue
        (changed if is_new else rest).append(text)
    return (changed + rest)[:MAX_FACT_FIELDS]


def _records(ctx: Context) -> tuple[dict, dict, dict]:
    """(the last call showing each record, every showing of it by step, the step of
    the last state-changing call naming each value)."""
    latest: dict[tuple[str, str], tuple[Call, dict]] = {}
    shown: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    touched: dict[str, int] = {}
    for call in ctx.me.calls:
        if call.tool in ctx.tools.changes and not call.failed:
            for value in call.args.values():
                if isinstance(value, str) and value:
                    touched[norm_value(value)] = call.step
        record = call.record
        identity = _identity(call, record) if record is not None else None
        if identity is not None:
            latest[identity] = (call, record)
            shown.setdefault(identity, []).append((call.step, record))
    return latest, shown, touched


def _facts(ctx: Context) -> list[Lesson]:
    latest, shown, touched = _records(ctx)
    lessons = []
    for (id_key, value), (call, record) in latest.items():
        last_change = touched.get(norm_value(value))
        if last_change is None or call.step < last_change:
            continue  # never changed here, or changed after it was last shown
        earlier = [r for step, r in shown[(id_key, value)] if step < last_change]
        before = earlier[-1] if earlier else None
        if before is not None and before == record:
            continue  # the change left the record as it was: no news
        fields = _fields(record, id_key, before)
        if not fields:
            continue
        label = id_key[:-3] if id_key.endswith("_id") else "record"
        owner = str(record.get("user_id") or ctx.run.user_id or "")
        lessons.append(
            Lesson(
                kind="durable_fact",
                content=f"{label.replace('_', ' ').capitalize()} {value}"
                + (f" (user {owner})" if owner and id_key != "user_id" else "")
                + f" at the end of the run: {', '.join(fields)}.",
                rationale=(
                    f"Step {call.result_step}: `{call.tool}` showed it after the last "
                    f"change to it (step {last_change})."
                ),
                confidence=0.65,
                step_indexes=sorted({call.step, call.result_step or call.step}),
                key=f"fact {label} {value} {' '.join(fields)}",
                user_id=owner,
                entity=f"{label}:{value}",
                memory_scope="user" if owner else "namespace",
                provenance="success" if ctx.run.succeeded else "failure",
            )
        )
    return lessons


def memory_lessons(ctx: Context) -> list[Lesson]:
    return _preferences(ctx) + _facts(ctx)
