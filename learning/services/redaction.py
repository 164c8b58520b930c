"""Secrets are redacted from run content before it is stored.

Every pattern here runs in time linear in the text (tests/security/test_redos.py): no
quantifier gives back what a following one could take, and a pattern that must see
what follows a run of characters starts only where the run starts. Redaction sees all
of every text; nothing is cut off to save time.
"""

import base64
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

MASK = "[REDACTED]"

_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# A JWT (header.payload.signature, both JSON parts base64url of "{..." = "eyJ") is
# found from its second part: matched from the first, a run like "eyJ-eyJ-eyJ-…" makes
# every "eyJ" a start that rescans the run before failing at its end (quadratic).
_JWT_TAIL = re.compile(r"\.eyJ[A-Za-z0-9_\-]{8,}+\.[A-Za-z0-9_\-]{8,}+")


def _jwt_head(text: str, start: int, dot: int) -> int | None:
    """Where the header part of a JWT begins in text[start:dot] (a base64url run):
    the leftmost "eyJ" at a word boundary with at least 8 more characters."""
    if dot - start < 11:
        return None
    at = text.find("eyJ", start, dot - 8)
    while at >= 0:
        before = text[at - 1] if at else " "
        if not (before.isalnum() or before == "_"):
            return at
        at = text.find("eyJ", at + 1, dot - 8)
    return None


def _jwt_redact(text: str) -> tuple[str, int]:
    """Mask every JWT: each ".eyJ<payload>.<signature>" whose preceding base64url run
    holds the header. Each run is read a bounded number of times."""
    spans: list[tuple[int, int]] = []
    pos = floor = 0
    while match := _JWT_TAIL.search(text, pos):
        dot = start = match.start()
        while start > floor and text[start - 1] in _B64URL:
            start -= 1
        head = _jwt_head(text, start, dot)
        if head is None:
            pos = dot + 1  # the payload may itself begin the next token
            continue
        spans.append((head, match.end()))
        pos = floor = match.end()
    if not spans:
        return text, 0
    out, last = [], 0
    for begin, end in spans:
        out += [text[last:begin], MASK]
        last = end
    out.append(text[last:])
    return "".join(out), len(spans)


# (name, pattern, group to mask or 0 for the whole match, or a function that redacts)
_PATTERNS: list[tuple[str, re.Pattern, int | Callable[[str], tuple[str, int]]]] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----.*?(?:-----END (?:[A-Z ]+ )?PRIVATE KEY-----|$)",
            re.S,
        ),
        0,
    ),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{16,}"), 0),
    ("openai_key", re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}"), 0),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), 0),
    (
        "aws_secret_key",
        re.compile(
            r"(?i)(aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+=]{40,})"
        ),
        2,
    ),
    (
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        0,
    ),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), 0),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), 0),
    ("stripe_key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"), 0),
    ("jwt", _JWT_TAIL, _jwt_redact),
    ("bearer_token", re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9_\-\.=:+/]{12,})"), 2),
    ("basic_auth", re.compile(r"(?i)(\bbasic\s+)([A-Za-z0-9+/]{16,}={0,2})"), 2),
    # From "://", not from the scheme: matched from the scheme, every letter of a long
    # word before "://" was a start that rescanned the rest (11 s on 98 KB).
    ("url_password", re.compile(r"(://[^\s:/@]++:)([^\s@/]++)(@)"), 2),
    (
        "assigned_secret",
        re.compile(
            r"(?i)(\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token"
            r"|client[_-]?secret|session[_-]?token|sessionid|session[_-]?key|passphrase)\b"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]{6,})"
        ),
        2,
    ),
    # A Cookie header's whole value ("cookie: sessionid=…; csrftoken=…"), to the end of
    # its line or quote.
    (
        "cookie",
        re.compile(
            r"(?i)(\b(?:set-)?cookie[\"']?[^\S\r\n]*+[:=][^\S\r\n]*+[\"']?)"
            r"([^\s\"'\[][^\r\n\"']*+)"
        ),
        2,
    ),
    # Authorization-like headers with any scheme or none ("Authorization: Token …",
    # "X-Auth: …"); a value already masked (by bearer_token) starts with "[" and is left.
    (
        "auth_header",
        re.compile(
            r"(?i)(\b(?:proxy-)?(?:authorization|x-auth(?:-token)?|x-api-key)[\"']?"
            r"[^\S\r\n]*+[:=][^\S\r\n]*+[\"']?(?:[A-Za-z]++[^\S\r\n]++)?+)"
            r"([^\s\"',;\[][^\s\"',;]{5,}+)"
        ),
        2,
    ),
    # A password given as a command's argument: "passwd hunter2", "--password hunter2".
    (
        "password_argument",
        re.compile(
            r"(?i)((?:\bpasswd|--pass(?:word|wd)?)\b[^\S\r\n]++)"
            r"([^\s\"',;\[\-][^\s\"',;]{3,}+)"
        ),
        2,
    ),
    # A secret stated in prose: "the database password is hunter2-prod-9931". The value
    # holds a digit and a letter ("the password is required" states no secret); the
    # lookaheads read one word, and a match starts only at a keyword.
    (
        "stated_secret",
        re.compile(
            r"(?i)(\b(?:password|passphrase|passwd|secret|api[_ -]?key|access[_ -]?token"
            r"|auth[_ -]?token|token)\s++(?:is|was)\s++[\"'`]?+)"
            r"(?=[^\s\"'`,;]*?\d)(?=[^\s\"'`,;]*?[a-z])([^\s\"'`,;]{6,}+)"
        ),
        2,
    ),
]


# A pattern only runs when one of its literal hints occurs in the lower-cased text: one
# substring scan per hint instead of a regex pass per pattern (ingest's hot path).
_HINTS: dict[str, tuple[str, ...]] = {
    "private_key": ("private key-----",),
    "anthropic_key": ("sk-ant-",),
    "openai_key": ("sk-",),
    "aws_access_key": ("akia", "asia", "agpa", "aida", "aroa"),
    "aws_secret_key": ("secret",),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "slack_token": ("xox",),
    "google_api_key": ("aiza",),
    "stripe_key": ("_live_", "_test_"),
    "jwt": ("eyj",),
    "bearer_token": ("bearer",),
    "basic_auth": ("basic",),
    "url_password": ("://",),
    "assigned_secret": (
        "password",
        "passwd",
        "pwd",
        "secret",
        "api",
        "token",
        "session",
        "passphrase",
    ),
    "cookie": ("cookie",),
    "auth_header": ("authorization", "x-auth", "x-api-key"),
    "password_argument": ("passwd", "--pass"),
    "stated_secret": ("password", "passphrase", "passwd", "secret", "api", "token"),
}


# A hint that is also a common word ("basic" in every airline run's "basic_economy")
# runs its pattern only when the lower-cased text also has what follows it there.
_HINT_FOLLOWED: dict[str, re.Pattern] = {"basic_auth": re.compile(r"basic\s")}


def _any_of(words) -> re.Pattern:
    """A pattern that finds whether any of the words occurs, as a trie of their
    letters: "a(?:pi|kia|…)|s(?:k-|e(?:cret|ssion))|…". The engine then tries one
    branch per letter instead of every word at every position (twice as fast as the
    plain alternation over a run's texts). A word that another one starts with
    stands for both: it occurs whenever the longer one does."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def branch(node: dict) -> str:
        if "" in node:
            return ""
        alternatives = [
            re.escape(char) + branch(rest) for char, rest in sorted(node.items())
        ]
        if len(alternatives) == 1:
            return alternatives[0]
        return f"(?:{'|'.join(alternatives)})"

    return re.compile(branch(trie))


_ANY_HINT = _any_of(hint for hints in _HINTS.values() for hint in hints)


# Texts this short are redacted once per process (`_short_redacted`): a run's JSON
# repeats its keys, tool names and small values in every step.
SHORT_TEXT = 64


def redact_text(text: str, *, decode: bool = True) -> tuple[str, int]:
    """Return the text with secrets masked, and how many were masked. A base64 run
    whose decoded text holds a secret is masked whole (`decode`)."""
    if not text or not isinstance(text, str):
        return text, 0
    if len(text) <= SHORT_TEXT:
        return _short_redacted(text, decode)
    return _redacted(text, decode)


@lru_cache(maxsize=16384)
def _short_redacted(text: str, decode: bool) -> tuple[str, int]:
    return _redacted(text, decode)


def _redacted(text: str, decode: bool) -> tuple[str, int]:
    total = 0
    lowered = text.lower()
    if _ANY_HINT.search(lowered):
        text, total = _patterns_redact(text, lowered)
    if decode and _B64_RUN.search(text):
        text, count = _base64_redact(text)
        total += count
    return text, total


def _patterns_redact(text: str, lowered: str) -> tuple[str, int]:
    total = 0
    for name, pattern, group in _PATTERNS:
        if not any(hint in lowered for hint in _HINTS[name]):
            continue
        followed = _HINT_FOLLOWED.get(name)
        if followed is not None and not followed.search(lowered):
            continue
        if callable(group):
            text, count = group(text)
            total += count
            continue

        def _mask(match: re.Match, group=group) -> str:
            if group == 0:
                return MASK
            start, end = match.span(group)
            whole_start = match.start()
            value = match.group(0)
            return value[: start - whole_start] + MASK + value[end - whole_start :]

        text, count = pattern.subn(_mask, text)
        total += count
    return text, total


# A run of base64 (standard or URL-safe alphabet) long enough to hide a key: decoded,
# it is redacted like any text (once: no base64 inside base64), and masked whole if
# that finds a secret ("c2stYW50LWFwaTAz…" is "sk-ant-api03…").
_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{20,}+={0,2}+")
_B64_URLSAFE = str.maketrans("-_", "+/")


def _base64_text(run: str) -> str | None:
    """The UTF-8 text a base64 run encodes, or None (not base64, or binary)."""
    body = run.rstrip("=").translate(_B64_URLSAFE)
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    visible = decoded.replace("\n", "").replace("\r", "").replace("\t", "")
    return decoded if visible.isprintable() else None


def _base64_redact(text: str) -> tuple[str, int]:
    out, last, total = [], 0, 0
    for match in _B64_RUN.finditer(text):
        decoded = _base64_text(match.group())
        if decoded is None or not redact_text(decoded, decode=False)[1]:
            continue
        out += [text[last : match.start()], MASK]
        last = match.end()
        total += 1
    if not total:
        return text, 0
    out.append(text[last:])
    return "".join(out), total


# A JSON object member whose name says it holds a secret is masked whatever its value
# looks like: {"password": "hunter2"} has nothing a text pattern could recognise.
_SECRET_KEY = re.compile(
    r"(?i)^(?:.*[_-])?(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token"
    r"|auth[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|authorization"
    r"|credentials?|token|api[_-]?token|session[_-]?token|sessionid|session[_-]?key"
    r"|x[_-]auth(?:[_-]token)?|x[_-]api[_-]key|cookie|set[_-]cookie|passphrase)$"
)


def redact_value(value: Any) -> tuple[Any, int]:
    """Redact strings anywhere inside a JSON-like value, dict keys included (a key
    that is itself a secret is masked; two keys masked alike stay apart as
    "[REDACTED]", "[REDACTED]#2", …); a string under a secret-sounding key is masked
    whole."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            if (
                isinstance(item, str)
                and item
                and item != MASK
                and _SECRET_KEY.match(str(key))
            ):
                new, count = MASK, 1
            else:
                new, count = redact_value(item)
            key, key_count = _redacted_key(key, out)
            out[key] = new
            total += count + key_count
        return out, total
    if isinstance(value, list):
        total, out_list = 0, []
        for item in value:
            new, count = redact_value(item)
            out_list.append(new)
            total += count
        return out_list, total
    return value, 0


def _redacted_key(key: Any, taken: dict) -> tuple[Any, int]:
    if not isinstance(key, str):
        return key, 0
    new, count = redact_text(key)
    if not count:
        return key, 0
    unique, n = new, 1
    while unique in taken:
        n += 1
        unique = f"{new}#{n}"
    return unique, count


def redact_fields(
    values: dict[str, Any], names: Iterable[str], *, max_lengths: dict | None = None
) -> int:
    """Redact, in place, the named members of `values` that are text or lists of
    text (identifiers, names, versions: whatever a client may paste a key into), cut
    to their column's length (a mask can be longer than what it hides). Returns how
    many secrets were masked."""
    total = 0
    for name in names:
        value = values.get(name)
        if isinstance(value, str):
            value, count = redact_text(value)
        elif isinstance(value, list):
            value, count = redact_value(value)
        else:
            continue
        limit = (max_lengths or {}).get(name)
        if limit and isinstance(value, str):
            value = value[:limit]
        values[name] = value
        total += count
    return total


def contains_secret(text: str) -> bool:
    return redact_text(text)[1] > 0
