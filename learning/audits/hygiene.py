"""Hygiene audit: would applying a candidate make the agent break its namespace's
policy? Denied tools, egress outside the allowlist, downloads piped into a shell,
disabled verification, destructive commands, force-pushes to protected branches,
secrets, and instructions smuggled in from run content."""

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from learning.services.redaction import redact_text
from learning.text.analysis import NEGATORS

DEFAULT_SENSITIVE_PATHS = [
    "~/.ssh",
    "id_rsa",
    "id_ed25519",
    "/etc/shadow",
    "/etc/passwd",
    "/etc/sudoers",
    "~/.aws/credentials",
    ".aws/credentials",
    ".git-credentials",
    "~/.kube/config",
    ".pypirc",
    ".npmrc",
    ".netrc",
    "/root/",
]
DEFAULT_PROTECTED_BRANCHES = ["main", "master", "production", "prod", "release/*"]
# Hosts used to move data out or run code from outside, flagged even without an
# allowlist.
SUSPICIOUS_HOSTS = [
    "pastebin.com",
    "hastebin.com",
    "transfer.sh",
    "termbin.com",
    "file.io",
    "webhook.site",
    "requestbin.com",
    "requestbin.net",
    "ngrok.io",
    "ngrok-free.app",
    "ngrok.app",
    "pipedream.net",
    "burpcollaborator.net",
    "interact.sh",
    "0x0.st",
]


@dataclass
class Policy:
    allowed_tools: list = field(default_factory=list)
    denied_tools: list = field(default_factory=list)
    egress_allowlist: list = field(default_factory=list)
    sensitive_paths: list = field(default_factory=lambda: list(DEFAULT_SENSITIVE_PATHS))
    protected_branches: list = field(
        default_factory=lambda: list(DEFAULT_PROTECTED_BRANCHES)
    )


def policy_for_namespace(namespace_id) -> Policy:
    """The namespace's HygienePolicy; defaults where it has none (or leaves the
    path and branch lists empty)."""
    from playbooks.models import HygienePolicy

    row = HygienePolicy.objects.filter(namespace_id=namespace_id).first()
    if row is None:
        return Policy()
    return Policy(
        allowed_tools=[t.lower() for t in row.allowed_tools or []],
        denied_tools=[t.lower() for t in row.denied_tools or []],
        egress_allowlist=[h.lower() for h in row.egress_allowlist or []],
        sensitive_paths=list(row.sensitive_paths or DEFAULT_SENSITIVE_PATHS),
        protected_branches=list(row.protected_branches or DEFAULT_PROTECTED_BRANCHES),
    )


def _finding(severity: str, message: str, rule: str) -> dict:
    return {"severity": severity, "message": message, "related": [], "rule": rule}


# --- negation: "never use --no-verify" is good advice, not a violation -------------

_NEG_WORDS = NEGATORS | {"dont", "do not", "must not", "should not", "not"}
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]|\b(?:but|then|unless)\b")
_TOKEN = re.compile(r"[a-z']+")


def _lower(text: str) -> str:
    """The text in lower case, character for character (same length, same offsets).

    The patterns below are written in lower case and run on this instead of with
    re.I: the regex engine skips an alternative by its first character only when
    that is a plain literal, and case-folding every comparison made the long
    alternations several times slower (tests/security/test_redos.py)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _negated(text: str, start: int) -> bool:
    """Whether the match at `start` sits in a negated instruction: a negator among
    the few words before it in the same clause."""
    prefix = text[max(0, start - 80) : start].lower()
    parts = _CLAUSE_BREAK.split(prefix)
    clause = parts[-1].replace("never mind", "")
    toks = [t.replace("'", "") for t in _TOKEN.findall(clause)][-6:]
    return any(t in NEGATORS or t in {"dont", "not", "no"} for t in toks)


def _matches(pattern: re.Pattern, low: str, *, negatable: bool = True):
    """The pattern's matches in the lower-cased text, but those in a negated clause."""
    for match in pattern.finditer(low):
        if negatable and _negated(low, match.start()):
            continue
        yield match


def _snippet(text: str, match: re.Match) -> str:
    """What matched, as the original text spells it."""
    return text[match.start() : match.end()].strip()[:80]


# --- tools --------------------------------------------------------------------------

# Each alternative starts at a word boundary: without one, every letter of a long
# identifier was a start that rescanned the rest of it.
_TOOL_REF = re.compile(
    r"\b(?:([a-z][a-z0-9]*+(?:_[a-z0-9]++)++)\s*+\("
    r"|(?:call|calls|calling|invoke|invoking|use|using|run|running|tool)\s++`?"
    r"([a-z][a-z0-9]*+(?:_[a-z0-9]++)++)`?)"
    r"|`?\b([a-z][a-z0-9]*+(?:_[a-z0-9]++)++)`?\s++tool\b"
)


def _tool_findings(low: str, policy: Policy) -> list[dict]:
    findings, seen = [], set()
    for tool in policy.denied_tools:
        pattern = re.compile(rf"(?<![\w\-]){re.escape(tool.lower())}(?![\w\-])")
        for _match in _matches(pattern, low):
            findings.append(
                _finding(
                    "block",
                    f"Uses the tool '{tool}', which the policy denies.",
                    "denied_tool",
                )
            )
            seen.add(tool)
            break
    if policy.allowed_tools:
        allowed = set(policy.allowed_tools)
        for match in _matches(_TOOL_REF, low):
            name = next(g for g in match.groups() if g).lower()
            if name in allowed or name in seen:
                continue
            seen.add(name)
            findings.append(
                _finding(
                    "warn",
                    f"Uses the tool '{name}', which is not in the policy's "
                    "allowed tools.",
                    "tool_not_allowed",
                )
            )
    return findings


# --- egress -------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?|ftp|wss?)://([^\s/:'\"<>)\]]+)")
_IP = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?::\d+)?(?![\w.])")
_HOST = re.compile(
    r"(?<![\w@/.\-])((?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:com|net|org|io|dev|sh|ru|cn|xyz|co|app|ai|me|info|biz|tk|top|site|online|cc|su"
    r"|st))(?![\w\-])"
)


_DOTTED = re.compile(r"[\d.]+")


def _host_allowed(host: str, allowlist: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().strip()
        if entry.startswith("*."):
            if host.endswith(entry[1:]) or host == entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host in {"localhost"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _egress_findings(low: str, policy: Policy) -> list[dict]:
    hosts: dict[str, bool] = {}  # host -> is a raw IP
    for match in _URL.finditer(low):
        hosts[match.group(1)] = False
    for match in _HOST.finditer(low):
        hosts.setdefault(match.group(1), False)
    for match in _IP.finditer(low):
        try:
            ipaddress.ip_address(match.group(1))
        except ValueError:
            continue
        hosts[match.group(1)] = True
    findings = []
    for host, raw_ip in hosts.items():
        if _is_loopback(host):
            continue
        if raw_ip and not _DOTTED.fullmatch(host):
            raw_ip = False
        try:
            raw_ip = raw_ip or bool(ipaddress.ip_address(host))
        except ValueError:
            pass
        what = "raw IP address" if raw_ip else "host"
        if policy.egress_allowlist:
            if not _host_allowed(host, policy.egress_allowlist):
                findings.append(
                    _finding(
                        "block",
                        f"Sends traffic to the {what} {host}, outside the "
                        "namespace's egress allowlist.",
                        "egress",
                    )
                )
        elif raw_ip:
            findings.append(
                _finding(
                    "warn",
                    f"Talks to the raw IP address {host}; name allowed hosts "
                    "in the egress allowlist instead.",
                    "egress_ip",
                )
            )
        elif any(host == h or host.endswith("." + h) for h in SUSPICIOUS_HOSTS):
            findings.append(
                _finding(
                    "warn",
                    f"Sends data to {host}, a paste/tunnel service often "
                    "used to move data out.",
                    "egress_suspicious",
                )
            )
    return findings


# --- dangerous instructions ---------------------------------------------------------

# The 200 characters between a download and its pipe stop at the next download, so a
# line of "curl curl curl …" is read once, not 200 times.
_DOWNLOAD = r"\b(?:curl|wget|iwr|invoke-webrequest|fetch)\b"
_PIPE_TO_SHELL = re.compile(
    rf"{_DOWNLOAD}(?:(?!{_DOWNLOAD})[^|\n]){{0,200}}+\|\s*+(?:sudo\s++)?"
    r"(?:ba|z|k|da|fi)?sh\b"
    rf"|\b(?:curl|wget)\b(?:(?!{_DOWNLOAD})[^|\n]){{0,200}}+\|\s*+(?:sudo\s++)?"
    r"(?:python3?|perl|ruby|node)\b"
    r"|\b(?:(?:ba|z)?sh\s+(?:-c\s+)?[\"']?(?:<\(|\$\()\s*(?:curl|wget)\b"
    r"|iex\s*\(?\s*(?:iwr|invoke-webrequest|\(new-object\s+net\.webclient\)))"
)

# Lower case throughout (they run on _lower(text)); alternatives that start at a word
# boundary share one `\b` in front, so the engine tests each by its first letter.
_DISABLE_CHECKS: list[tuple[str, re.Pattern]] = [
    (
        "commit hooks",
        re.compile(
            # "commit" later on the line, looked for up to the next skip= only (each
            # skip= rescanned the rest of the line)
            r"--no-verify\b"
            r"|\b(?:husky=0\b|skip=[\w,-]*\b(?=(?:(?!skip=)[^\n])*?commit)"
            r"|(?:skip|bypass|disable)\w*\s+(?:the\s+|all\s+)?"
            r"(?:git\s+|commit\s+|pre-commit\s+|pre-push\s+)*hooks?\b)"
        ),
    ),
    (
        "TLS verification",
        re.compile(
            # Two whitespace runs never meet (`\s*[= ]\s*` split one run every way).
            r"--insecure\b|--no-check-certificate\b"
            r"|\b(?:verify\s*+[=:]\s*+false\b"
            r"|curl\s++(?:-\w+\s+)*-k\b"
            r"|sslverify(?:\s*+=|\s)\s*+false\b"
            r"|(?:disable|skip|turn\s+off|bypass|ignore)\w*\s+(?:the\s+)?"
            r"(?:ssl|tls|https|certificate|cert)\s*"
            r"(?:verification|validation|checks?|errors?|warnings?)?\b)"
            r"|http\.sslverify\s*+=?\s*+false"
            r"|node_tls_reject_unauthorized\s*=\s*['\"]?0|pythonhttpsverify\s*=\s*0"
            r"|check_hostname\s*=\s*false|cert_none\b|insecureskipverify\s*:\s*true"
            r"|strict-ssl(?:\s*+=|\s)\s*+false|git_ssl_no_verify"
            r"|stricthostkeychecking\s*+=?\s*+no"
            r"|rejectunauthorized\s*:\s*false"
        ),
    ),
    (
        "tests",
        re.compile(
            r"\b(?:(?:skip|skipping|disable|disabling|bypass|comment(?:ing)?\s+out|delete"
            r"|deleting|remove|removing|xfail|mark(?:ing)?\s+as\s+skipped)\s+"
            r"(?:the\s+|all\s+|any\s+)?"
            r"(?:failing\s+|flaky\s+|broken\s+|unit\s+|integration\s+|remaining\s+)*"
            r"(?:tests?|test\s+suite|specs?|ci|checks|linting|lint|type\s*checks?)\b"
            r"(?!\s+(?:data|fixtures?|files?|users?|accounts?|environment|env|records?|"
            r"database|db|mode|cards?|payments?|orders?|warnings?|errors?|issues|comments?))"
            r"|skip_tests\s*=\s*(?:1|true)\b)"
            r"|-dskiptests\b|\[skip ci\]|--no-tests?\b|--ignore-failures?\b"
        ),
    ),
    (
        "the firewall or security controls",
        re.compile(
            r"\b(?:ufw\s+disable\b|iptables\s+(?:-f|--flush)\b|setenforce\s+0\b"
            r"|systemctl\s+(?:stop|disable|mask)\s+(?:firewalld|ufw|apparmor|auditd|fail2ban)"
            r"|(?:disable|turn\s+off|stop|bypass)\w*\s+(?:the\s+)?(?:firewall|selinux|"
            r"apparmor|antivirus|defender|waf|rate\s+limit(?:ing|er)?|audit\s+log(?:ging)?|"
            r"2fa|mfa|two-factor|authentication|auth\s+checks?|csrf(?:\s+protection)?|"
            r"signature\s+(?:checks?|verification)|security\s+(?:checks?|scans?))\b"
            r"|chmod\s+(?:-r\s+)?777\b)"
            r"|disablerealtimemonitoring"
        ),
    ),
    (
        "verification",
        re.compile(
            r"\b(?:skip|skipping|disable|disabling|bypass|bypassing)\s+(?:the\s+)?"
            r"(?:identity\s+|signature\s+|checksum\s+|gpg\s+|email\s+)?verification\b"
            r"|--(?:no-gpg-checks?|nogpgcheck|allow-unauthenticated|disable-content-trust"
            r"|skip-checksum|trusted-host)\b"
        ),
    ),
]

_DESTRUCTIVE = re.compile(
    r"\b(?:rm\s+(?:-[a-z]*\s+)*-[a-z]*(?:rf|fr)[a-z]*\s+(?:--no-preserve-root\s+)?"
    r"(?:/|/\*|~/?|\*|\$home|\.\.?/?)(?=\s|$|[;&|\"'`])"
    r"|drop\s+(?:table|database|schema)\b"
    r"|truncate\s+table\b"
    r"|delete\s+from\s+[\w.\"]+\s*(?:;|$|\"|'|`)"
    r"|mkfs(?:\.\w+)?\b"
    r"|dd\s+if=\S+\s+of=/dev/(?:sd|nvme|hd|xvd|disk)"
    r"|format\s+c:"
    r"|kubectl\s+delete\s+(?:ns|namespace|--all)\b"
    r"|terraform\s+destroy\b(?!\s+-target)"
    # f, d and x in one flag group, in any order (was f…d…x in order: cubic on "fdfd…")
    r"|git\s+clean\s+-(?=[a-z]*f)(?=[a-z]*d)(?=[a-z]*x)[a-z]+"
    r"|shred\s+-[a-z]*\s+/dev/"
    r"|redis-cli\s+flushall\b|flushall\b"
    r"|delete\s+(?:the\s+)?(?:production|prod)\s+(?:database|db|bucket|cluster)\b)"
    r"|--no-preserve-root"
    r"|>\s*/dev/(?:sd[a-z]|nvme\d|disk\d)"
    r"|:\(\)\s*\{\s*:\|:&\s*\};:",
    re.M,
)

# The flags are looked for up to the next "git push" (each push rescanned the line).
_FORCE_PUSH = re.compile(
    r"\b(?:git\s+push\b((?:(?!\bgit\s+push\b)[^\n;&|])*?)"
    r"(?:--force(?:-with-lease)?|\s-f)\b([^\n;&|]*)"
    r"|force[- ]?push(?:es|ed|ing)?\b(?:\s+(?:it|the\s+branch|changes|commits))?"
    r"(?:\s+(?:to|onto|into))?(?:\s+(?:the\s+)?(?:remote\s+)?)?([\w/\-.*]+)?)"
)


def _branch_protected(branch: str, protected: list[str]) -> bool:
    branch = branch.strip().strip("'\"`").lower()
    if ":" in branch:
        branch = branch.split(":")[-1]
    for pattern in protected:
        pattern = pattern.lower()
        if pattern.endswith("*") and branch.startswith(pattern[:-1]):
            return True
        if branch == pattern:
            return True
    return False


def _force_push_findings(text: str, low: str, policy: Policy) -> list[dict]:
    findings = []
    for match in _matches(_FORCE_PUSH, low):
        words = " ".join(
            text[match.start(g) : match.end(g)] for g in range(1, 4) if match.group(g)
        ).split()
        words = [w for w in words if not w.startswith("-") and w.lower() != "origin"]
        hit = next(
            (w for w in words if _branch_protected(w, policy.protected_branches)), None
        )
        if hit:
            findings.append(
                _finding(
                    "block",
                    f"Force-pushes the protected branch '{hit.strip()}'.",
                    "force_push_protected",
                )
            )
        else:
            findings.append(
                _finding(
                    "warn",
                    f"Force-pushes ({_snippet(text, match)}); history on shared "
                    "branches may be lost.",
                    "force_push",
                )
            )
    return findings


_EXFIL_VERBS = re.compile(
    r"\b(?:cat|less|more|head|tail|read|print|echo|dump|copy|cp|scp|rsync|upload|send"
    r"|post|paste|share|email|attach|base64|curl|wget|exfiltrate|commit|push|chmod)\b"
)


def _sensitive_path_findings(lowered: str, policy: Policy) -> list[dict]:
    """One finding naming every sensitive path the text touches: `block` when its
    clause reads, copies or sends it, `warn` when it only names it."""
    hits: dict[str, bool] = {}
    for path in policy.sensitive_paths:
        p = path.lower()
        start = 0
        while (index := lowered.find(p, start)) >= 0:
            start = index + 1
            before = lowered[index - 1] if index else " "
            if p[0].isalnum() and (before.isalnum() or before == "_"):
                continue
            if _negated(lowered, index):
                continue
            clause = (
                _CLAUSE_BREAK.split(lowered[max(0, index - 60) : index])[-1]
                + _CLAUSE_BREAK.split(lowered[index : index + 60])[0]
            )
            hits[path] = hits.get(path, False) or bool(_EXFIL_VERBS.search(clause))
            if hits[path]:
                break  # already a read: more mentions change nothing
    if not hits:
        return []
    reads = any(hits.values())
    return [
        _finding(
            "block" if reads else "warn",
            f"{'Reads or moves' if reads else 'Mentions'} sensitive path(s): "
            f"{', '.join(hits)}.",
            "sensitive_path",
        )
    ]


# --- secrets ------------------------------------------------------------------------

_TOKENISH = re.compile(r"(?<![\w/+=\-])[A-Za-z0-9_\-+/=]{20,}(?![\w/+=\-])")
_UUID = re.compile(
    r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I
)
_HEX = re.compile(r"[0-9a-f]+", re.I)
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"\d")


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _secret_findings(text: str) -> list[dict]:
    findings = []
    _masked, count = redact_text(text)
    if count:
        findings.append(
            _finding(
                "block",
                f"Contains {count} credential(s) or secret(s); curated "
                "knowledge must never carry secrets.",
                "secret",
            )
        )
        return findings
    parts = (p for m in _TOKENISH.finditer(text) for p in m.group(0).split("="))
    for token in parts:
        if len(token) < 20:
            continue  # key=value: judge the value alone
        if _UUID.match(token) or _HEX.fullmatch(token):
            continue  # run ids and commit hashes
        if "_" in token and token.replace("_", "").isalpha():
            continue  # snake_case identifiers
        if "/" in token and not _DIGIT.search(token):
            continue  # paths
        classes = sum(bool(p.search(token)) for p in (_LOWER, _UPPER, _DIGIT))
        if classes >= 3 and shannon_entropy(token) >= 3.8:
            findings.append(
                _finding(
                    "warn",
                    f"Contains a high-entropy string ({token[:6]}…), "
                    "possibly a secret.",
                    "entropy",
                )
            )
            break
    return findings


# --- prompt injection ---------------------------------------------------------------

_HIDDEN = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)
_INJECTION = re.compile(
    r"\b(?:(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|every\s+)?"
    r"(?:of\s+)?(?:the\s+|your\s+|my\s+)?(?:previous|prior|above|earlier|preceding|"
    r"original|existing|system|safety)\s+(?:instructions?|prompts?|rules|messages?|"
    r"directions|guidelines|context|policies)\b"
    r"|(?:reveal|print|show|repeat|output|leak|dump|disclose|share)\s+(?:me\s+)?"
    r"(?:your\s+|the\s+)?(?:full\s+|entire\s+)?(?:system|hidden|initial|secret|internal|"
    r"developer)\s+(?:prompt|instructions?|message|rules)\b"
    r"|you\s+are\s+now\s+(?:in\s+)?(?:developer\s+mode|dan|jailbroken|unrestricted)"
    r"|do\s+anything\s+now\b"
    r"|new\s+(?:system\s+)?instructions\s*:"
    r"|pretend\s+(?:that\s+)?(?:you\s+have\s+no|there\s+are\s+no)\s+(?:rules|restrictions))"
)
# A header at the start of a line; the spaces before it stay on that line (`\s*` across
# newlines made every newline a start that rescanned the rest: 10.7 s on 20 KB).
_ROLE_HEADER = re.compile(
    r"^[^\S\n]*+(?:#++[^\S\n]*+)?(?:system|assistant|developer)[^\S\n]*+:"
    r"|<\|im_start\|>|<\|system\|>|\[/?inst\]|<<sys>>|</?system>",
    re.M,
)


def _injection_findings(text: str, low: str) -> list[dict]:
    findings = []
    hidden = _HIDDEN.findall(text)
    if hidden:
        names = sorted({f"U+{ord(ch):04X}" for ch in hidden})
        findings.append(
            _finding(
                "block",
                f"Contains hidden unicode ({', '.join(names)}) that can "
                "smuggle instructions past a reviewer.",
                "hidden_unicode",
            )
        )
    for match in _matches(_INJECTION, low):
        findings.append(
            _finding(
                "block",
                f"Looks like an instruction smuggled from run content "
                f"(prompt injection): “{_snippet(text, match)}”.",
                "prompt_injection",
            )
        )
        break
    match = _ROLE_HEADER.search(low)
    if match:
        findings.append(
            _finding(
                "block",
                f"Contains a chat role header ({_snippet(text, match)}) copied "
                "from run content (prompt injection).",
                "role_header",
            )
        )
    return findings


def hygiene_findings(*, text: str, policy: Policy) -> list[dict]:
    """Every policy violation in `text` (one finding per rule and item).

    Every pattern runs in time linear in the text and sees all of it (a cap would let
    padding smuggle a violation past the audit): tests/security/test_redos.py."""
    low = _lower(text)
    findings: list[dict] = []
    findings += _tool_findings(low, policy)
    findings += _egress_findings(low, policy)
    for match in _matches(_PIPE_TO_SHELL, low):
        findings.append(
            _finding(
                "block",
                f"Pipes a download into an interpreter ({_snippet(text, match)}).",
                "pipe_to_shell",
            )
        )
        break
    for what, pattern in _DISABLE_CHECKS:
        for match in _matches(pattern, low):
            findings.append(
                _finding(
                    "block",
                    f"Disables {what} ({_snippet(text, match)}).",
                    "disable_checks",
                )
            )
            break
    for match in _matches(_DESTRUCTIVE, low):
        findings.append(
            _finding(
                "block",
                f"Runs a destructive command ({_snippet(text, match)}).",
                "destructive",
            )
        )
        break
    findings += _force_push_findings(text, low, policy)
    findings += _sensitive_path_findings(low, policy)
    findings += _secret_findings(text)
    findings += _injection_findings(text, low)
    return findings
