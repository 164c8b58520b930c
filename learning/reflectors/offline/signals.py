"""Signals every agent's runs carry, whatever the domain: a tool's answer that says it
failed (tracebacks, exit codes, HTTP errors, "not found", "invalid", "denied", syntax
errors, timeouts, an ``is_error`` flag or an error status), the suggestions such an
answer offers, and the general shape of an error message (its words without one run's
ids, values, names and paths), which is what lessons and merge keys are made of."""

import ast
import re
from dataclasses import dataclass
from typing import Any

from learning.lessons import run_specific_terms

HEAD = 600  # characters of an answer where a soft failure phrase counts
TAIL, TAIL_LINES = 800, 3  # where an environment's verdict on a long answer stands
SOFT_LIMIT = 600  # longer answers are content, not an error report, unless hard

# Hard signals: they mean failure wherever they appear in the head of the answer.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
# Linear-time patterns (tests/security/test_redos.py): the indent stays on its line
# (`^\s*` across newlines made every newline of a blank run a start that rescanned it).
_EXCEPTION_LINE = re.compile(
    r"^[^\S\n]*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))\b(?::\s*(.*))?$",
    re.M,
)
_HARD = [
    (
        "syntax",
        re.compile(
            r"syntax error|SyntaxError|IndentationError|TabError|\bE999\b|parse error|"
            r"unexpected (?:token|indent|EOF)|unmatched ['\"(\[{)\]}]|invalid syntax",
            re.I,
        ),
    ),
    (
        "exit",
        re.compile(
            r"exit (?:code|status):? ?[1-9]\d*|exitcode: ?[1-9]|non-zero exit|"
            r"command not found|segmentation fault|core dumped",
            re.I,
        ),
    ),
    (
        "http",
        re.compile(
            r"\b(?:HTTP(?:/\d(?:\.\d)?)? )?[45]\d\d (?:Bad Request|Unauthori[sz]ed|Forbidden|"
            r"Not Found|Method Not Allowed|Conflict|Gone|Unprocessable|Too Many Requests|"
            r"Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)\b|"
            r"\bstatus(?:[ _]code)?['\"]?\s*[:=]\s*[45]\d\d\b",
            re.I,
        ),
    ),
]
# Soft signals: phrases that mean failure in a short answer (a long one is content).
_SOFT = [
    ("timeout", re.compile(r"timed? ?out|time limit exceeded|deadline exceeded", re.I)),
    (
        "denied",
        re.compile(
            r"permission denied|access denied|\bforbidden\b|not authori[sz]ed|"
            r"unauthori[sz]ed|not permitted|not allowed",
            re.I,
        ),
    ),
    (
        "not_found",
        re.compile(
            r"not found|could not find|couldn't find|can ?not find|can't find|"
            r"no such (?:file|directory|\w+)|does not exist|doesn't exist|not exist|"
            r"unknown (?:command|option|tool|function|argument)",
            re.I,
        ),
    ),
    (
        "no_results",
        re.compile(
            r"\bno results?\b|\bno matches\b|\b0 (?:results|matches)\b|nothing found|"
            r"returned no |found no ",
            re.I,
        ),
    ),
    (
        "invalid",
        re.compile(
            r"\binvalid\b|not valid|malformed|\bwrong\b|\bincorrect\b|\brejected\b|"
            r"not enough|insufficient|does not add up|mismatch|\bmust (?:be|have)\b|"
            r"is required|missing required|unexpected (?:argument|keyword)|"
            r"\busage:|cannot be|can't be|not available|unavailable",
            re.I,
        ),
    ),
]
# What an environment appends to an answer it stopped or that failed.
_VERDICTS = (("timeout", dict(_SOFT)["timeout"]), ("exit", dict(_HARD)["exit"]))
# A sentence, not code or data: words first, no assignment, call or markup.
_VERDICT_LINE = re.compile(r"^[A-Za-z](?=[A-Za-z' ]{2})[^=(){}<>\[\]`\"]*$")
_LEADING_FAILURE = re.compile(
    r"^\W*(?:error|exception|fatal|failed|failure|fail)\b[\s:,-]*", re.I
)
_PROGRAM = re.compile(r"(?:^|\s)[\w.-]+: $")
_WARNING = re.compile(r"^\W*(?:warning|warn|note|info)\b", re.I)
_SUGGESTIONS = re.compile(
    r"(?:similar|did you mean|perhaps you meant|suggestions?|maybe you meant|"
    r"available (?:options|values|choices|commands|tools|titles)|"
    r"valid (?:options|values|choices) (?:are|include))\s*+[:?]?\s*+(\[[^\]]*\]|[^\n]+)",
    re.I,
)
# Words one of the patterns needs (lower case): a cheap first look, since most answers
# are plain results and never need the patterns at all.
_HARD_WORDS = {
    "syntax": ("syntax", "indent", "taberror", "e999", "parse error", "unexpected", "unmatched"),
    "exit": ("exit", "command not found", "segmentation", "core dumped"),
    "http": ("http", "status", "bad request", "not found", "forbidden", "server error",
             "unavailable", "unauthori", "too many", "gateway", "conflict", "gone",
             "unprocessable", "method not allowed"),
}  # fmt: skip
_SOFT_WORDS = (
    "error", "exception", "fatal", "fail", "denied", "forbidden", "authori", "permit",
    "allowed", "found", "find", "no such", "exist", "unknown", "result", "match",
    "nothing", "valid", "malformed", "wrong", "incorrect", "reject", "enough",
    "insufficient", "add up", "mismatch", "must", "required", "missing", "unexpected",
    "usage", "cannot", "can not", "can't", "available", "timed", "timeout",
    "time limit", "deadline", "returned no",
)  # fmt: skip
_ERRORS_BLOCK = re.compile(r"ERRORS?:\s*\n\s*-?\s*([^\n]+)")


@dataclass(frozen=True)
class ErrorSignal:
    """A tool answer that says the call failed."""

    category: str  # syntax | exit | http | exception | timeout | denied | not_found
    # | no_results | invalid | error
    message: str  # the line that says what went wrong (one run's words included)
    shape: str  # the message in general terms: for lesson text and merge keys
    suggestions: tuple[str, ...] = ()


def _flag(meta: Any) -> bool:
    if not isinstance(meta, dict):
        return False
    if meta.get("is_error") is True or meta.get("error"):
        return True
    status = str(meta.get("status") or meta.get("status_code") or "").lower()
    return status in {"error", "failed", "failure", "status_code_error"}


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        error = value.get("error")
        if error:
            return error if isinstance(error, str) else str(error)
        return " ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    return "" if value is None else str(value)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _message(text: str, category: str, match: re.Match | None) -> str:
    """The most telling line: an ``ERRORS:`` entry, the exception line of a traceback,
    the line holding the matched phrase, else the first line."""
    block = _ERRORS_BLOCK.search(text)
    if block:
        return block.group(1).strip(" -")
    if category == "exception":
        lines = [m for m in _EXCEPTION_LINE.finditer(text)]
        if lines:
            return lines[-1].group(0).strip()
    if match is not None:
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        line = text[start : end if end != -1 else len(text)]
        at = match.start() - start
        cut = max(line.rfind(". ", 0, at), line.rfind("! ", 0, at))
        program = list(re.finditer(r"(?:^|\s)([\w.-]+: )", line[:at]))
        if at > 150 and program:
            cut = max(cut, program[-1].start(1) - 1)
        return line[cut + 1 :].strip() if cut >= 0 else line.strip()
    return _first_line(text)


def suggestions_in(text: str) -> tuple[str, ...]:
    """Values an answer offers instead ("Similar: ['A', 'B']", "Did you mean X?")."""
    match = _SUGGESTIONS.search(text[:4000])
    if not match:
        return ()
    raw = match.group(1).strip()
    items: list = []
    if raw.startswith("["):
        try:
            loaded = ast.literal_eval(raw)
            items = loaded if isinstance(loaded, (list, tuple)) else []
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            items = re.findall(r"['\"]([^'\"]+)['\"]", raw)
    else:
        items = [p for p in re.split(r",\s*|\s+or\s+", raw.rstrip("?.!")) if p]
    return tuple(str(i).strip() for i in items if str(i).strip())[:20]


_ERROR_FIELD = re.compile(
    r"[\"'](?:error|errors|error_message|message)[\"']\s*:\s*[\"']([^\"']{3,300})|"
    r"[\"']status(?:_code)?[\"']\s*:\s*[\"']?((?:error|failed|failure)\b|[45]\d\d\b)",
    re.I,
)


def _structured_error(head: str) -> str:
    """The error a JSON answer reports in an error or status field, else ""."""
    match = _ERROR_FIELD.search(head)
    if not match:
        return ""
    if match.group(1):
        return "" if "message" in match.group(0)[:12] else f"Error: {match.group(1)}"
    return f"Error: status {match.group(2)}"


def _soft(text: str) -> tuple[str, re.Match | None]:
    """A failure phrase in the first line of a short answer (or of any answer that
    opens with "Error:"), near its start or right after a program's name
    ("base64: invalid input"); further in, such words are content."""
    line = _first_line(text[:HEAD])
    leading = _LEADING_FAILURE.match(line)
    if len(text.strip()) > SOFT_LIMIT and not leading:
        return "", None
    for name, pattern in _SOFT:
        for match in pattern.finditer(line):
            if match.start() <= 150 or _PROGRAM.search(line[: match.start()]):
                return name, match
    if leading:
        return "error", None
    if len(text.strip()) <= SOFT_LIMIT and (exc := _EXCEPTION_LINE.match(line)):
        return "exception", exc
    return "", None


def _tail(text: str) -> tuple[str, re.Match | None]:
    """A verdict the environment appended to a long answer: its last lines (before
    status lines wholly in parentheses) opening with a timeout or an exit status
    ("EXECUTION TIMED OUT BECAUSE NO OUTPUT WAS PRODUCED …" after pages of a tool's
    output). A line that reads as code or data is content, not a verdict."""
    lines = [ln.strip() for ln in text[-TAIL:].splitlines() if ln.strip()]
    while lines and lines[-1].startswith("(") and lines[-1].endswith(")"):
        lines.pop()
    for line in lines[-TAIL_LINES:]:
        if not _VERDICT_LINE.match(line):
            continue
        for name, pattern in _VERDICTS:
            match = pattern.search(line)
            if match and match.start() <= 40:
                return name, pattern.search(text, text.rfind(line))
    return "", None


def _beyond_head(text: str) -> tuple[str, re.Match | None]:
    """Failures that count beyond the head: a traceback anywhere in the first 20,000
    characters, an environment's verdict at the end of a long answer."""
    if "Traceback (most recent call last)" in text[:20000]:
        return "exception", None
    return _tail(text) if len(text) > HEAD else ("", None)


def _category(text: str, head: str, flagged: bool) -> tuple[str, re.Match | None]:
    """The kind of failure an answer reports ("" for none) and where it says so."""
    low = head.lower()
    category, match = _beyond_head(text)
    if category:
        return category, match
    if not flagged and not any(w in low for w in _SOFT_WORDS):
        if not any(w in low for words in _HARD_WORDS.values() for w in words):
            return "", None
    for name, pattern in _HARD:
        if any(w in low for w in _HARD_WORDS[name]):
            match = pattern.search(head)
            if match:
                return name, match
    if not _WARNING.match(head):
        category, match = _soft(text)
        if category:
            return category, match
    return ("error" if flagged else ""), None


def error_signal(value: Any, meta: Any = None) -> ErrorSignal | None:
    """The failure an answer reports, or None for an answer that is not one."""
    flagged = _flag(meta) or (isinstance(value, dict) and _flag(value))
    text = _as_text(value)
    head = text[:HEAD]
    if head.lstrip()[:1] in ("{", "["):
        reported = _structured_error(head)
        if not reported and not flagged:
            return None  # a record or a list: a result, unless it carries an error
        text = head = reported or text
    category, match = _category(text, head, flagged)
    if not category:
        return None
    message = _message(text, category, match)
    message = _LEADING_FAILURE.sub("", message).strip() or message
    return ErrorSignal(
        category=category,
        message=message[:300],
        shape=general_shape(message),
        suggestions=suggestions_in(text),
    )


# --- general text ------------------------------------------------------------------

_QUOTED = re.compile(
    r"'[^'\n]{3,}'|\"[^\"\n]{3,}\"|`[^`'\n]{3,}[`']|‘[^’\n]+’|“[^”\n]+”"
)
# Innermost brackets, and a file name from where its run of name characters starts
# (from every "[" of "[[[…", or every word of "a-a-a…", the rest of the line was
# rescanned: quadratic).
_BRACKETED = re.compile(r"\[[^\[\]\n]*\]|\{[^{}\n]*\}|<[^<>\n]*>")
_PATH = re.compile(
    r"(?:[A-Za-z]:)?(?:[~.]?/[\w.@~+*-]+)+/?|(?<![\w.-])[\w.-]+\.(?:[a-z]{1,4})\b"
)
_URL = re.compile(r"\bhttps?://\S+", re.I)
# Letters and digits mixed (A1, R2D2, gift_card_7): one run's ids, however short —
# except lint codes such as E999 or F821, which name the kind of error.
_SHORT_ID = re.compile(r"\b(?![A-Z]\d{3,4}\b)(?=\w*\d)(?=\w*[A-Za-z])\w{2,}\b")
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])(?<!HTTP )[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
_CAPITALISED_RUN = re.compile(
    r"(?<![.!?:]\s)(?<!^)\b(?:[A-Z][a-z]+\s){1,}[A-Z][a-z]+\b"
)
_GAP = "…"
# Capitalised words that belong to error messages, not to names.
_MESSAGE_WORDS = {
    "not",
    "found",
    "no",
    "such",
    "file",
    "directory",
    "bad",
    "request",
    "internal",
    "server",
    "error",
    "forbidden",
    "unauthorized",
    "service",
    "unavailable",
    "gateway",
    "timeout",
    "method",
    "allowed",
    "too",
    "many",
    "requests",
    "results",
    "invalid",
    "permission",
    "denied",
    "access",
    "unknown",
    "syntax",
    "could",
    "find",
}


def _drop_name(match: re.Match) -> str:
    words = match.group(0).split()
    if all(w.lower() in _MESSAGE_WORDS for w in words):
        return match.group(0)
    return _GAP


def general_shape(text: str, limit: int = 90) -> str:
    """The message without one run's particulars: quoted values, bracketed lists, paths,
    URLs, numbers, ids, dates and multi-word names become "…"; then the first clause
    that still says something (at least three words)."""
    text = " ".join((text or "").split())
    for pattern in (_URL, _QUOTED, _BRACKETED, _PATH, _HEX):
        text = pattern.sub(_GAP, text)
    for term in run_specific_terms(text):
        text = text.replace(term, _GAP)
    text = _SHORT_ID.sub(_GAP, text)
    text = _NUMBER.sub(_GAP, text)
    text = _CAPITALISED_RUN.sub(_drop_name, text)
    text = re.sub(r"(?:…\s*[,;:/-]?\s*)+…", _GAP, text)
    clauses = [c.strip() for c in re.split(r"(?<=[.!?;])\s+|,\s+(?=[a-z])", text)]
    chosen = ""
    for clause in clauses:
        words = [w for w in re.findall(r"[A-Za-z][\w'-]*", clause)]
        chosen = f"{chosen} {clause}".strip() if chosen else clause
        if len(words) >= 3:
            break
    chosen = chosen.strip(" .,;:!?-" + _GAP).strip()
    chosen = re.sub(r"\s*…\s*$", "", chosen)
    if len(chosen) > limit:
        cut = chosen[:limit].rsplit(" ", 1)[0]
        chosen = cut.rstrip(" ,;:" + _GAP)
    return chosen


def shape_key(shape: str) -> str:
    """The shape as a merge key: lower-case words only."""
    return " ".join(re.findall(r"[a-z][a-z0-9_']*", shape.lower()))[:80]
