"""Reading lesson text: normalisation, tokens, stems, sentences, polarity, the values
a sentence sets and the names it mentions. Pure functions (no database): the audits,
curation and recall read text the same way."""

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

STOPWORDS = frozenset(
    """a an the and or but if then than so to of in on at by for from with into onto
    over under as is are was were be been being it its this that these those there here
    their they them he she his her we our you your i me my us
    do does did done doing have has had having can could should would will shall may
    might must just also only very too any some each every all both either
    when while where which who whom what whose how why
    up down out off again further once about above below between through during
    same other such own more most less least few many much
    please make sure ensure sure time times""".split()
)

# Words that turn a statement's polarity around: a negated instruction contradicts
# the plain one on the same subject.
NEGATORS = frozenset(
    """not no never dont don't doesnt doesn't didnt didn't cannot can't cant shouldnt
    shouldn't mustnt mustn't wont won't isnt isn't arent aren't neednt needn't none
    without skip skipping skipped skips avoid avoids avoiding avoided refrain stop
    stopping omit omitting omitted unnecessary needless forbid forbidden prohibit
    prohibited disallow disallowed""".split()
)
# Multi-word negations, rewritten to one marker before tokenising.
_NEG_PHRASES = [
    (re.compile(r"\b(?:no|not) longer\b"), " not "),
    (re.compile(r"\binstead of\b"), " not "),
    (re.compile(r"\brather than\b"), " not "),
    (re.compile(r"\bunnecessary to\b"), " not "),
    (re.compile(r"\bno need to\b"), " not "),
    (re.compile(r"\bthere is no need\b"), " not "),
]
# Any of them: most sentences hold none, and one search is cheaper than six passes.
_NEG_PHRASE_HINT = re.compile("|".join(p.pattern for p, _ in _NEG_PHRASES))

# Opposites where one side negates the other (sign -1 for the second set).
POLARITY_PAIRS: list[tuple[frozenset, frozenset]] = [
    (
        frozenset({"enable", "enabled", "enabling", "enables", "turn_on", "activate"}),
        frozenset(
            {"disable", "disabled", "disabling", "disables", "turn_off", "deactivate"}
        ),
    ),
    (
        frozenset(
            {
                "allow",
                "allowed",
                "allows",
                "permit",
                "permitted",
                "accept",
                "grant",
                "approve",
                "whitelist",
                "allowlist",
            }
        ),
        frozenset(
            {
                "deny",
                "denied",
                "denies",
                "block",
                "blocked",
                "blocks",
                "reject",
                "rejected",
                "revoke",
                "refuse",
                "decline",
                "blacklist",
                "blocklist",
            }
        ),
    ),
    (frozenset({"always"}), frozenset({"never"})),
    (
        frozenset(
            {
                "use",
                "uses",
                "using",
                "prefer",
                "prefers",
                "preferred",
                "recommend",
                "recommended",
            }
        ),
        frozenset(
            {"avoid", "avoids", "avoided", "avoiding", "discourage", "discouraged"}
        ),
    ),
    (
        frozenset(
            {"keep", "kept", "keeps", "retain", "preserve", "add", "adds", "added"}
        ),
        frozenset(
            {
                "remove",
                "removed",
                "removes",
                "delete",
                "deleted",
                "deletes",
                "drop",
                "dropped",
                "discard",
                "purge",
                "strip",
            }
        ),
    ),
    (
        frozenset({"include", "included", "includes", "including"}),
        frozenset({"exclude", "excluded", "excludes", "excluding", "omit"}),
    ),
    (
        frozenset({"show", "shows", "display", "expose", "reveal"}),
        frozenset({"hide", "hides", "hidden", "conceal", "mask", "masked"}),
    ),
    (
        frozenset({"require", "required", "requires", "mandatory"}),
        frozenset({"optional"}),
    ),
    (frozenset({"lock", "locked"}), frozenset({"unlock", "unlocked"})),
    (frozenset({"trust", "trusted"}), frozenset({"distrust", "untrusted"})),
    (frozenset({"safe"}), frozenset({"unsafe"})),
]

# Opposite choices on one axis: neither side is a negation, they just differ.
AXIS_PAIRS: list[tuple[str, frozenset, frozenset]] = [
    (
        "increase/decrease",
        frozenset(
            {
                "increase",
                "increased",
                "increases",
                "raise",
                "raised",
                "higher",
                "more",
                "longer",
                "larger",
                "bigger",
                "extend",
                "maximum",
            }
        ),
        frozenset(
            {
                "decrease",
                "decreased",
                "decreases",
                "lower",
                "lowered",
                "reduce",
                "reduced",
                "fewer",
                "less",
                "shorter",
                "smaller",
                "shrink",
                "minimum",
            }
        ),
    ),
    (
        "before/after",
        frozenset({"before", "first", "earlier", "prior", "beforehand", "upfront"}),
        frozenset({"after", "last", "later", "afterwards", "afterward", "once"}),
    ),
    (
        "sync/async",
        frozenset({"synchronous", "synchronously", "sync", "blocking", "inline"}),
        frozenset({"asynchronous", "asynchronously", "async", "background", "queued"}),
    ),
    (
        "manual/automatic",
        frozenset({"manual", "manually", "human"}),
        frozenset({"automatic", "automatically", "auto", "automated"}),
    ),
    (
        "formal/casual",
        frozenset({"formal", "formally"}),
        frozenset({"casual", "informal", "casually", "informally"}),
    ),
    (
        "ascending/descending",
        frozenset({"ascending", "oldest"}),
        frozenset({"descending", "newest", "latest"}),
    ),
    (
        "public/private",
        frozenset({"public", "publicly"}),
        frozenset({"private", "privately", "internal"}),
    ),
    ("online/offline", frozenset({"online"}), frozenset({"offline"})),
    (
        "verbose/concise",
        frozenset({"verbose", "detailed", "lengthy"}),
        frozenset({"concise", "brief", "short", "terse"}),
    ),
    ("upper/lower", frozenset({"uppercase", "upper"}), frozenset({"lowercase"})),
]

# Closed sets of choices: two texts naming different members on one subject disagree.
CHOICE_GROUPS: dict[str, frozenset] = {
    "language": frozenset(
        """english spanish french german italian portuguese dutch japanese chinese
        korean arabic russian hindi polish swedish turkish""".split()
    ),
    "programming language": frozenset(
        "python java javascript typescript go golang rust ruby php kotlin scala".split()
    ),
    "format": frozenset(
        "json csv parquet xml yaml avro orc tsv excel pdf markdown".split()
    ),
    "channel": frozenset("email sms phone chat slack pagerduty".split()),
    "weekday": frozenset(
        "monday tuesday wednesday thursday friday saturday sunday".split()
    ),
    "cloud region": frozenset(
        """us-east-1 us-east-2 us-west-1 us-west-2 eu-west-1 eu-west-2 eu-central-1
        ap-southeast-1 ap-northeast-1""".split()
    ),
    "database": frozenset(
        "postgres postgresql mysql sqlite mongodb redis oracle".split()
    ),
    "package manager": frozenset("pip poetry conda uv npm yarn pnpm".split()),
    "http method": frozenset({"get", "post", "put", "patch"}),
}
# Words whose presence makes a choice-group word a value rather than a topic.
_CHOICE_NOISE = {"get", "post", "put", "patch", "go", "chat"}
# The name of a group without a member ("the language they wrote in") leaves the
# value open: against a text that fixes one ("in English") it is a different value.
_CHOICE_NOUNS = {
    "language": "language",
    "languages": "language",
    "channel": "channel",
    "region": "cloud region",
}
OPEN_VALUE = "(their own)"

# Words (as stems) that name one idea in lessons, so "book without asking" and
# "confirm with the user before booking" are about the same thing.
_CONCEPTS = {
    "ask": "confirm",
    "confirmat": "confirm",
    "consent": "confirm",
    "approval": "confirm",
    "permission": "confirm",
}


def concept(stemmed: str) -> str:
    return _CONCEPTS.get(stemmed, stemmed)


_UNITS = {
    "ms": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "min",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "week": "w",
    "weeks": "w",
    "month": "mo",
    "months": "mo",
    "%": "%",
    "percent": "%",
    "kb": "kb",
    "mb": "mb",
    "gb": "gb",
    "tb": "tb",
    "time": "x",
    "times": "x",
    "attempt": "x",
    "attempts": "x",
    "retry": "x",
    "retries": "x",
    "x": "x",
}
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "sixty": 60,
    "hundred": 100,
    "once": 1,
    "twice": 2,
}

_TIMES_WORDS = {"twice": 2.0, "thrice": 3.0}
_ORDINALS = {
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
# Unit words that say nothing about the subject once their number is read.
_UNIT_NOISE = frozenset(
    """ms millisecond milliseconds sec secs second seconds min mins minute minutes hr
    hrs hour hours day days week weeks month months percent kb mb gb tb""".split()
)
FLIP_WINDOW = 4  # a negation governs the next few words

# Patterns here see candidate and playbook text: each runs in linear time
# (tests/security/test_redos.py). An id starts where its run of id characters starts,
# so the look-aheads read each run once.
_ID = re.compile(
    r"(?<![a-z0-9_\-])(?=[a-z0-9_\-]*\d)(?=[a-z0-9_\-]*[a-z])[a-z0-9][a-z0-9_\-]*"
)
_HIDDEN_CHARS = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_URLISH = re.compile(r"\b(?:https?|s3|gs|ftp)://[^\s'\"<>]+", re.I)
_NUMBER = re.compile(
    r"(?<![\w.\-])(\d+(?:\.\d+)?)(?:\s*(%|[a-z]+)(?![\w]))?(?![\w.\-]\w)", re.I
)
_WORD = re.compile(r"[a-z0-9][a-z0-9_'\-]*[a-z0-9]|[a-z0-9]")
# Sentences and clauses: an explanation after ": " or "; " is a statement of its own.
# " - " between clauses: the spaces before the dash stay on one line and start where
# the run of spaces starts (else every space of a long run was a start that rescanned it).
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;:])\s+|\n+|(?<![^\S\n])[^\S\n]++-\s+")
_QUOTED = re.compile(r'"[^"\n]{3,300}"')
_ID_SEPARATORS = re.compile(r"[_\-]+")
_PLAIN_WORD = re.compile(r"[a-z][a-z0-9]*")


def normalise(text: str) -> str:
    """NFKC, lower case, hidden characters removed, curly quotes straightened."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _HIDDEN_CHARS.sub("", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    return text.lower()


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A small suffix stripper (Porter-like, enough to match retries/retry/retrying)."""
    w = word.replace("'", "")
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith(("ss", "ply", "ous", "sis", "us")):
        return w
    for suffix, repl in (
        ("ational", "ate"),
        ("ization", "ize"),
        ("fulness", "ful"),
        ("iveness", "ive"),
        ("ements", "e"),
        ("ement", "e"),
        ("ments", ""),
        ("ment", ""),
        ("ations", "ate"),
        ("ation", "ate"),
        ("ities", ""),
        ("ity", ""),
        ("ingly", ""),
        ("edly", ""),
        ("ies", "y"),
        ("ied", "y"),
        ("ing", ""),
        ("ers", ""),
        ("er", ""),
        ("ed", ""),
        ("ly", ""),
        ("es", ""),
        ("s", ""),
    ):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # stopp -> stop, retri -> retri
    elif len(w) >= 6 and w.endswith("ell") and len(w) < len(word):
        w = w[:-1]  # cancell(ing) -> cancel, label(led) -> label
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    parts = [p.strip(" -*\t") for p in _SENTENCE_SPLIT.split(text or "")]
    return [p for p in parts if len(p) > 2]


@dataclass
class Analysis:
    """What the audits need to know about one sentence or text."""

    text: str
    subject: frozenset = field(default_factory=frozenset)  # stemmed content words
    sign: int = 1  # +1 plain, -1 negated (negators and negative-side pair words)
    axes: dict = field(default_factory=dict)  # axis name -> {"a", "b"}
    values: dict = field(default_factory=dict)  # category -> frozenset of values
    negations: tuple = ()  # the words that flipped the sign
    pair_words: tuple = ()
    base_sign: int = 1  # -1 for harmful strategies
    # Names of entities and code: ids (4wq150, mia_li_3668) and identifiers
    # (get_user_details); two texts naming different ones are about different things.
    ids: frozenset = field(default_factory=frozenset)
    # Each sign flip and the subject words it governs (None: the whole sentence).
    flips: tuple = ()

    def sign_on(self, shared: frozenset) -> int:
        """The polarity of what this sentence says about `shared` subject words: a
        negation of something else ("confirm X without calling back") does not
        count."""
        sign = self.base_sign
        for _word, scope in self.flips:
            if scope is None or scope & shared:
                sign = -sign
        return sign


_POLARITY_LOOKUP: dict[str, int] = {}
for _pos, _neg in POLARITY_PAIRS:
    for _w in _pos:
        _POLARITY_LOOKUP.setdefault(_w, 1)
    for _w in _neg:
        _POLARITY_LOOKUP[_w] = -1
_AXIS_LOOKUP: dict[str, list[tuple[str, str]]] = {}
for _name, _a, _b in AXIS_PAIRS:
    for _w in _a:
        _AXIS_LOOKUP.setdefault(_w, []).append((_name, "a"))
    for _w in _b:
        _AXIS_LOOKUP.setdefault(_w, []).append((_name, "b"))
_CHOICE_LOOKUP = {w: g for g, ws in CHOICE_GROUPS.items() for w in ws}
_ALL_MARKERS = set(NEGATORS) | set(_POLARITY_LOOKUP) | set(_AXIS_LOOKUP)


def _extract_values(norm: str) -> tuple[dict, str]:
    """Numbers with units and URLs/buckets; returns the text without them (and
    without quoted speech) so they do not count as subject words."""
    values: dict[str, set] = {}
    for match in _URLISH.finditer(norm):
        values.setdefault("location", set()).add(match.group(0).rstrip(".,;)"))
    norm = _URLISH.sub(" ", norm)
    for match in _ISO_DATE.finditer(norm):  # a date is one value, not three numbers
        values.setdefault("date", set()).add(match.group(0))
    norm = _ISO_DATE.sub(" ", norm)
    # Quoted speech ("the user said …") is run content, not the candidate's advice.
    norm = _QUOTED.sub(" ", norm)

    def _num(match: re.Match) -> str:
        number, unit = match.group(1), (match.group(2) or "").lower()
        canon = _UNITS.get(unit)
        if unit and canon is None and match.group(0)[len(number)].isalpha():
            return match.group(0)  # "4XGCCM", "3rd": an identifier, not a quantity
        values.setdefault(f"quantity:{canon or ''}", set()).add(float(number))
        # An unknown word after the number ("3.12 in", "2 retries") stays a word.
        return " " if canon or not unit else f" {unit} "

    norm = _NUMBER.sub(_num, norm)
    return {k: frozenset(v) for k, v in values.items()}, norm


def _subject_word(tok: str, bare: str) -> bool:
    """A word that says what a sentence is about (not a stopword, number or unit)."""
    return not (
        tok in STOPWORDS or tok in _NUMBER_WORDS or tok in _UNIT_NOISE or len(bare) <= 2
    )


_QUANTITY_WORDS = (
    frozenset(_TIMES_WORDS) | frozenset(_ORDINALS) | frozenset(_NUMBER_WORDS)
)


def _word_quantity(tok: str, following: str, values: dict) -> bool:
    """A quantity written in words, added to `values`: an ordinal ("after the second
    attempt"), a number word before a unit ("three retries") or a count of times in
    one word ("twice"; "once" also means "after", so it is left to the order words).
    True if `tok` was one."""
    if tok in _TIMES_WORDS:
        values["quantity:x"] = values.get("quantity:x", frozenset()) | {
            _TIMES_WORDS[tok]
        }
        return True
    if tok in _ORDINALS and following not in _UNITS:
        values["quantity:"] = values.get("quantity:", frozenset()) | {
            float(_ORDINALS[tok])
        }
        return True
    if tok in _NUMBER_WORDS and following in _UNITS:
        key = f"quantity:{_UNITS[following]}"
        values[key] = values.get(key, frozenset()) | {float(_NUMBER_WORDS[tok])}
        return True
    return False


# One pass over the tokens that tries each token class in its order of precedence
# (negator, polarity word, marker, choice, quantity, subject word): split up, that
# order would be spread over several functions.
def analyse(text: str, *, sign: int = 1) -> Analysis:
    """Subject words, polarity, axis sides and values of one sentence. `sign` is -1 for
    texts that describe something to avoid (harmful strategies). Cached by (text,
    sign) however it is called: `analyse(t)` and `analyse(t, sign=1)` are one entry
    (lru_cache keys a keyword apart, so an audit analysed every text twice)."""
    return _analysis(text, sign)


@lru_cache(maxsize=4096)
def _analysis(text: str, sign: int) -> Analysis:  # noqa: C901
    norm = normalise(text)
    if _NEG_PHRASE_HINT.search(norm):
        for pattern, repl in _NEG_PHRASES:
            norm = pattern.sub(repl, norm)
    norm = norm.replace("turn on", "turn_on").replace("turn off", "turn_off")
    values, rest = _extract_values(norm)
    toks = words(rest)
    base_sign = sign
    subject, negs, pairs = set(), [], []
    stems: list[str | None] = []  # per token: its subject stem, if it is one
    flip_at: list[tuple[int, str]] = []
    axes: dict[str, set] = {}
    choice_vals: dict[str, set] = {}
    open_values: set[str] = set()
    for i, tok in enumerate(toks):
        bare = tok.replace("'", "")
        stems.append(None)
        if tok in NEGATORS or bare in NEGATORS:
            sign = -sign
            negs.append(tok)
            flip_at.append((i, tok))
            continue
        pol = _POLARITY_LOOKUP.get(tok)
        if pol is not None:
            pairs.append(tok)
            if pol < 0:
                sign = -sign
                flip_at.append((i, tok))
        for axis, side in _AXIS_LOOKUP.get(tok, ()):
            axes.setdefault(axis, set()).add(side)
        if tok in _ALL_MARKERS:
            continue
        group = _CHOICE_LOOKUP.get(tok)
        if group and tok not in _CHOICE_NOISE:
            choice_vals.setdefault(group, set()).add(tok)
            continue
        if tok in _QUANTITY_WORDS and _word_quantity(
            tok, toks[i + 1] if i + 1 < len(toks) else "", values
        ):
            continue
        if not _subject_word(tok, bare):
            continue
        stems[i] = concept(stem(bare))
        subject.add(stems[i])
        if tok in _CHOICE_NOUNS:
            open_values.add(_CHOICE_NOUNS[tok])
    if base_sign < 0 and any(i <= 1 for i, _ in flip_at):
        # "Never …", "Do not …": a harmful entry phrased as advice says what it means.
        base_sign = 1
    flips = []
    for i, word in flip_at:
        scope = frozenset(st for st in stems[i + 1 : i + 1 + FLIP_WINDOW] if st)
        flips.append((word, scope or None))
    for group, vals in choice_vals.items():
        values[group] = frozenset(vals)
    for group in open_values - set(choice_vals):
        values[group] = frozenset({OPEN_VALUE})
    ids = _names(toks)
    return Analysis(
        text=text,
        ids=ids,
        subject=frozenset(subject),
        sign=sign,
        axes={k: frozenset(v) for k, v in axes.items()},
        values=values,
        negations=tuple(negs),
        pair_words=tuple(pairs),
        base_sign=base_sign,
        flips=tuple(flips),
    )


def _names(toks) -> frozenset:
    # An id holds a digit, so a word of letters alone is never one (checked first:
    # most words are).
    return frozenset(
        t
        for t in toks
        if len(t) >= 4
        and (
            ("_" in t and t.strip("_"))
            or (len(t) >= 5 and not t.isalpha() and _ID.fullmatch(t))
        )
        and t not in _CHOICE_LOOKUP
    )


@lru_cache(maxsize=4096)
def text_names(text: str) -> frozenset:
    """The ids and code identifiers a whole text names (quoted parts included)."""
    return _names(words(normalise(text)))


def different_names(a: frozenset, b: frozenset) -> bool:
    """Each names something the other does not: different entities or tools."""
    return bool(a - b) and bool(b - a)


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def overlap(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def index_words(text: str) -> list[str]:
    """Words as PostgreSQL's text-search parser sees them: identifiers split at
    underscores and hyphens (get_user_details -> get, user, details)."""
    return [
        part
        for tok in words(normalise(text))
        for part in _ID_SEPARATORS.split(tok.replace("'", ""))
        if part
    ]


def query_terms(text: str, *, limit: int = 8) -> list[str]:
    """The most specific words of a text (longest first), for full-text prefilters."""
    seen: list[str] = []
    for tok in index_words(text):
        if (
            tok in STOPWORDS
            or tok in _ALL_MARKERS
            or tok in _CHOICE_LOOKUP
            or tok in _UNITS
            or tok in _NUMBER_WORDS
            or len(tok) < 3
            or not _PLAIN_WORD.fullmatch(tok)
            or tok in seen
        ):
            continue
        seen.append(tok)
    seen.sort(key=len, reverse=True)
    return seen[:limit]
