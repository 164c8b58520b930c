"""Audits of a set of candidates (those one set of runs made): the same reports as
auditing them one by one, with the curated look-ups done once for the set; and the
per-process caches of the namespace's policies, which must never serve a policy that
was changed (by any process) before the audit started."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from learning.audits.cache import caches_clear
from learning.models import LearningCandidate
from learning.services.audit import candidate_audit, candidates_audit
from playbooks.models import AgentPolicy, HygienePolicy, Memory, Strategy
from tests.factories import CandidateFactory, NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db

TEXTS = [
    "Offer a meal voucher when a flight is delayed over two hours.",
    "Never offer a meal voucher when a flight is delayed over two hours.",
    "Confirm the cabin class before searching for a new flight.",
    "Check the baggage allowance before changing the cabin class.",
    "Offer lounge access when a connecting flight is cancelled.",
    "Ask for the reservation id before cancelling a flight.",
]
CURATED = [
    "Offer a meal voucher when the flight is delayed two hours or more.",
    "Confirm the cabin class with the passenger before any search.",
    "Do not offer lounge access when a connecting flight is cancelled.",
    "Check the baggage allowance of the new cabin before changing it.",
    "Ask for the reservation id and the user id before cancelling.",
]


def _world():
    namespace = NamespaceFactory()
    playbook = make_playbook(namespace, slug="airline")
    for n, text in enumerate(CURATED):
        Strategy.objects.create(
            playbook=playbook, type="helpful", description=text, position=n
        )
        Memory.objects.create(namespace=namespace, kind="durable_fact", content=text)
    AgentPolicy.objects.create(
        namespace=namespace, text="Never offer lounge access to passengers."
    )
    HygienePolicy.objects.create(namespace=namespace, denied_tools=["refund_override"])
    return namespace, playbook


def _candidates(namespace, playbook, texts) -> list:
    return [
        CandidateFactory(namespace=namespace, playbook=playbook, content=text)
        for text in texts
    ]


def _reports(namespace) -> list:
    """Each candidate's status and findings, with the ids of what they name made
    relative to the namespace's first (two namespaces made alike compare equal)."""
    first = {
        "candidate": LearningCandidate.objects.filter(namespace=namespace),
        "strategy": Strategy.objects.filter(playbook__namespace=namespace),
        "memory": Memory.objects.filter(namespace=namespace),
        "policy": AgentPolicy.objects.filter(namespace=namespace),
    }
    base = {kind: qs.order_by("id").first().pk for kind, qs in first.items()}
    out = []
    for c in first["candidate"].order_by("id"):
        report = {}
        for audit, findings in (c.audit or {}).items():
            report[audit] = [
                (
                    f["severity"],
                    re.sub(
                        r"(candidate|strategy|memory) #(\d+)",
                        lambda m: f"{m[1]} #{int(m[2]) - base[m[1].lower()]}",
                        f["message"],
                        flags=re.IGNORECASE,
                    ),
                    [(r["type"], r["id"] - base[r["type"]]) for r in f["related"]],
                )
                for f in findings
            ]
        out.append((c.content, c.status, c.max_severity, report))
    return out


def _curated_lookups(queries) -> dict:
    sql = [q["sql"] for q in queries.captured_queries]
    return {
        "strategy": sum('FROM "playbooks_strategy"' in q for q in sql),
        "memory": sum('FROM "playbooks_memory"' in q for q in sql),
        "hygiene": sum('FROM "playbooks_hygienepolicy"' in q for q in sql),
        "pending": sum(
            'FROM "learning_learningcandidate"' in q and "to_tsquery" in q for q in sql
        ),
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL look-ups")
def test_a_set_audit_reports_what_one_by_one_reports():
    """Six candidates audited as a set get the reports (findings, merges, mirrored
    conflicts) they get audited one by one, and the curated strategies and memories
    and the other pending candidates are looked up in one query each for the set
    (twice as many candidates: the same count)."""
    one_ns, one_pb = _world()
    for candidate in _candidates(one_ns, one_pb, TEXTS):
        candidate_audit(candidate=candidate)
    set_ns, set_pb = _world()
    small = [c.pk for c in _candidates(set_ns, set_pb, TEXTS[:3])]
    large = [c.pk for c in _candidates(set_ns, set_pb, TEXTS[3:])]
    LearningCandidate.objects.filter(pk__in=small + large).update(audit=None)
    with CaptureQueriesContext(connection) as queries:
        candidates_audit(candidate_ids=small + large)
    assert _curated_lookups(queries)["strategy"] == 1
    assert _curated_lookups(queries)["memory"] == 1
    assert _curated_lookups(queries)["pending"] == 1
    assert _reports(set_ns) == _reports(one_ns)
    assert any(r[3]["conflict"] or r[3]["duplicate"] for r in _reports(set_ns))


UNRELATED = [
    "Quote the fare rules before selling a basic economy ticket.",
    "Read back the passport number letter by letter.",
    "Mention the pet carrier size limits when a pet travels in the cabin.",
    "Send the itinerary by email once the booking is paid.",
]


def _candidate_updates(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('UPDATE "learning_learningcandidate"')
    ]


def test_reports_naming_no_other_candidate_are_stored_by_one_update():
    """A set whose reports name no other pending candidate is stored by one UPDATE,
    not one per candidate, and each candidate gets its own report."""
    namespace, playbook = _world()
    made = [c.pk for c in _candidates(namespace, playbook, UNRELATED)]
    with CaptureQueriesContext(connection) as queries:
        reports = candidates_audit(candidate_ids=made)
    assert len(_candidate_updates(queries)) == 1
    stored = {c.pk: c for c in LearningCandidate.objects.filter(pk__in=made)}
    for pk in made:
        assert stored[pk].audited_at is not None
        assert stored[pk].audit == reports[pk]


def test_an_audit_that_fails_leaves_the_reports_before_it_stored(monkeypatch):
    """The set's reports are written together, but an audit that raises does not take
    the ones made before it with it."""
    from learning.services import audit as audit_service

    namespace, playbook = _world()
    made = [c.pk for c in _candidates(namespace, playbook, UNRELATED)]
    build = audit_service.audit_report_build

    def failing_third(*, candidate, curated=None):
        if candidate.pk == made[2]:
            raise RuntimeError("the reader failed")
        return build(candidate=candidate, curated=curated)

    monkeypatch.setattr(audit_service, "audit_report_build", failing_third)
    with pytest.raises(RuntimeError):
        candidates_audit(candidate_ids=made)
    audited = set(
        LearningCandidate.objects.filter(
            pk__in=made, audited_at__isnull=False
        ).values_list("pk", flat=True)
    )
    assert audited == set(made[:2])


def test_a_policy_changed_by_any_writer_is_used_by_the_next_audit(admin_client_api):
    """The cached policies serve an audit only while the rows are unchanged: after
    PUT /api/v1/policy/ (and after a write that bypasses the ORM's save, as another
    process or a migration might make) the next audit judges by the new policy."""
    namespace = admin_client_api.namespace
    playbook = make_playbook(namespace, slug="airline")
    text = "Use refund_override to refund a cancelled flight at once."
    caches_clear()

    def audit():
        candidate = CandidateFactory(
            namespace=namespace, playbook=playbook, content=text
        )
        return candidate_audit(candidate=candidate)

    assert audit()["hygiene"] == []  # cached: no policy
    response = admin_client_api.put(
        "/api/v1/policy/", {"denied_tools": ["refund_override"]}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert [f["rule"] for f in audit()["hygiene"]] == ["denied_tool"]
    HygienePolicy.objects.filter(namespace=namespace).update(denied_tools=[])
    assert audit()["hygiene"] == []
    # The agent's policy likewise.
    lesson = "Offer lounge access to passengers of a cancelled flight."
    response = admin_client_api.put(
        "/api/v1/policy/",
        {"agent_policy": "Never offer lounge access to passengers."},
        format="json",
    )
    assert response.status_code == 200, response.json()
    candidate = CandidateFactory(namespace=namespace, playbook=playbook, content=lesson)
    report = candidate_audit(candidate=candidate)
    assert [f["severity"] for f in report["conflict"]] == ["block"]
    AgentPolicy.objects.filter(namespace=namespace).delete()
    candidate = CandidateFactory(namespace=namespace, playbook=playbook, content=lesson)
    assert candidate_audit(candidate=candidate)["conflict"] == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="policy digest")
def test_an_unchanged_policy_is_read_once_per_process():
    namespace, playbook = _world()
    caches_clear()
    first, second = _candidates(namespace, playbook, TEXTS[:2])
    with CaptureQueriesContext(connection) as cold:
        candidate_audit(candidate=first)
    with CaptureQueriesContext(connection) as warm:
        candidate_audit(candidate=second)
    assert _curated_lookups(cold)["hygiene"] == 1
    assert _curated_lookups(warm)["hygiene"] == 0
    assert len(warm) <= len(cold) - 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL look-ups")
def test_a_set_audit_looks_pending_candidates_up_again_after_a_merge():
    """Three near-identical candidates of one set: the first one's audit merges the
    other two into it, so the audits after it must not compare with them as pending
    (the set's look-up was made before the merge). The reports equal those of the
    same candidates audited one by one."""
    texts = [
        "Ask for the booking code before cancelling a connecting flight.",
        "Ask for the booking code before cancelling any connecting flight.",
        "Ask for the booking code before you cancel a connecting flight.",
    ]
    one_ns, one_pb = _world()
    _candidates(one_ns, one_pb, texts)  # all made first, as a set's are
    for candidate in LearningCandidate.objects.filter(namespace=one_ns).order_by("id"):
        candidate_audit(candidate=candidate)
    set_ns, set_pb = _world()
    made = [c.pk for c in _candidates(set_ns, set_pb, texts)]
    candidates_audit(candidate_ids=made)
    statuses = [r[1] for r in _reports(set_ns)]
    assert statuses[0] == "pending" and "pending" not in statuses[1:], statuses
    assert _reports(set_ns) == _reports(one_ns)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL look-ups")
def test_a_long_candidate_is_looked_up_by_its_rarest_words(monkeypatch):
    """With word statistics, a long candidate's look-up uses its MAX_LOOKUP_TERMS
    rarest words (the query's groups grow as C(n, 3): 56, not 364 for 14 words);
    without statistics (a small table) every word is used."""
    from learning.audits import scope

    words = [f"zq{chr(97 + n)}ward" for n in range(14)]
    freq = {w: 0.001 * (n + 1) for n, w in enumerate(words)}  # the first ones rarest
    monkeypatch.setattr(
        scope, "lexemes", lambda terms: {t: t for t in terms}, raising=True
    )
    monkeypatch.setattr(scope, "word_stats", lambda stats_source: freq)
    shuffled = words[7:] + words[:7]
    picked = scope._selective_terms(shuffled, stats_source="strategy_desc_fts")
    assert picked == words[: scope.MAX_LOOKUP_TERMS]
    monkeypatch.setattr(scope, "word_stats", lambda stats_source: {})
    assert (
        scope._selective_terms(shuffled, stats_source="strategy_desc_fts") == shuffled
    )
    assert len(scope._terms_tsquery(picked).split(" | ")) == 56


def _mixed_set(namespace, playbook) -> list:
    """Candidates of one set in several scopes: two playbooks, no playbook, and
    memories of two users (each looks up only its own scope's rows)."""
    other = make_playbook(namespace, slug="baggage")
    Strategy.objects.create(
        playbook=other, type="helpful", description=CURATED[0], position=0
    )
    made = _candidates(namespace, playbook, TEXTS[:2])
    made += _candidates(namespace, other, TEXTS[:2])
    for user in ("u1", "u2", "u1"):
        made.append(
            CandidateFactory(
                namespace=namespace, kind="preference", user_id=user, content=TEXTS[4]
            )
        )
    return made


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL look-ups")
def test_a_set_audit_in_several_scopes_reports_what_one_by_one_reports():
    """The look-ups of every scope are one query per source for the set; the
    findings (duplicates within a playbook or a user's memories only, merges,
    conflicts) are those of one-by-one audits."""
    one_ns, one_pb = _world()
    for candidate in _mixed_set(one_ns, one_pb):
        candidate_audit(candidate=candidate)
    set_ns, set_pb = _world()
    made = [c.pk for c in _mixed_set(set_ns, set_pb)]
    with CaptureQueriesContext(connection) as queries:
        candidates_audit(candidate_ids=made)
    # strategies of airline, of baggage, of the namespace (the preferences): one query
    assert _curated_lookups(queries)["strategy"] == 1
    assert _curated_lookups(queries)["pending"] == 1
    reports = _reports(set_ns)
    assert reports == _reports(one_ns)
    statuses = [status for _text, status, _severity, _report in reports]
    # the second u1 preference merges into the first; u2's stays
    assert statuses[4:] == ["pending", "pending", "superseded"], statuses


def test_a_set_audit_queues_one_re_audit_for_its_merges(monkeypatch):
    """Three near-identical candidates of one set: two are merged away, and what names
    them is audited again by one task for both (not one per merge); that task
    re-audits a pending candidate whose report names a merged one."""
    import learning.services.audit as audit_module
    import review.services as review_services
    from learning import audit_tasks

    texts = [
        "Ask for the booking code before cancelling a connecting flight.",
        "Ask for the booking code before cancelling any connecting flight.",
        "Ask for the booking code before you cancel a connecting flight.",
    ]
    sent = []
    monkeypatch.setattr(
        audit_module,
        "task_enqueue_on_commit",
        lambda func, *args, **kw: sent.append((func, args)),
    )
    monkeypatch.setattr(
        review_services,
        "task_enqueue_on_commit",
        lambda func, *args, **kw: sent.append((func, args)),
    )
    namespace, playbook = _world()
    made = [c.pk for c in _candidates(namespace, playbook, texts)]
    candidates_audit(candidate_ids=made)
    superseded = sorted(
        LearningCandidate.objects.filter(pk__in=made, status="superseded").values_list(
            "pk", flat=True
        )
    )
    assert len(superseded) == 2
    assert sent == [(audit_module.MERGED_REAUDIT_TASK, (superseded,))]
    # A pending candidate whose (stale) report names a merged one is audited again.
    other = CandidateFactory(
        namespace=namespace,
        playbook=playbook,
        content="Never ask for the booking code when cancelling a connecting flight.",
    )
    LearningCandidate.objects.filter(pk=other.pk).update(
        audit={
            "conflict": [
                {
                    "severity": "warn",
                    "message": "stale",
                    "related": [{"type": "candidate", "id": superseded[0], "text": ""}],
                }
            ],
            "hygiene": [],
            "duplicate": [],
        }
    )
    assert other.pk in audit_tasks.candidates_merged_reaudit_task(superseded)
    other.refresh_from_db()
    assert other.audited_at is not None
    assert "stale" not in str(other.audit)
