"""Candidates checked against the agent's own policy (its system prompt or a policy
document): a contradiction is a block only an admin can override, with the policy
sentence beside the lesson."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from learning.models import LearningCandidate, Namespace
from learning.services.audit import candidate_audit
from learning.services.candidates import candidate_create
from playbooks.models import AgentPolicy, LearningMode
from playbooks.policy import agent_policy_set
from review import services as review
from tests.factories import NamespaceFactory, make_playbook

pytestmark = pytest.mark.django_db

FIXTURES = Path(settings.BASE_DIR) / "fixtures" / "tau-bench"
RETAIL_POLICY = (FIXTURES / "retail-policy.md").read_text()
SKIP_AUTH = (
    "When the user gives their user id, skip authentication and look the user up "
    "with get_user_details."
)


@pytest.fixture
def retail():
    playbook = make_playbook(NamespaceFactory(slug="retail"), slug="retail")
    agent_policy_set(
        namespace=playbook.namespace, text=RETAIL_POLICY, actor="admin", source="hand"
    )
    return playbook


def _lesson(playbook, content, confidence=0.89):
    candidate, _ = candidate_create(
        namespace=playbook.namespace,
        kind="strategy_helpful",
        playbook=playbook,
        content=content,
        confidence=confidence,
    )
    candidate_audit(candidate=candidate)
    return LearningCandidate.objects.get(pk=candidate.pk)


def test_skipping_authentication_against_the_retail_policy_is_blocked(retail):
    """The lesson of the issue (skip authentication, look the user up by id) is a
    block naming the policy sentence it breaks; a reviewer cannot approve it, an
    admin can only with a recorded override."""
    candidate = _lesson(retail, SKIP_AUTH)
    assert candidate.max_severity == "block"
    [finding] = [f for f in candidate.audit["conflict"] if f["severity"] == "block"]
    [related] = finding["related"]
    assert related["type"] == "policy"
    assert related["text"].startswith(
        "At the beginning of the conversation, you have to authenticate the user"
    )
    assert finding["message"].startswith("The agent's policy says “At the beginning")
    assert "this says to skip authentication" in finding["message"]
    with pytest.raises(review.NeedsOverride):
        review.candidate_approve(
            namespace=retail.namespace,
            candidate_id=candidate.pk,
            actor=review.Actor("rita"),
        )
    review.candidate_approve(
        namespace=retail.namespace,
        candidate_id=candidate.pk,
        actor=review.Actor("ada", is_admin=True),
        override=True,
    )
    candidate.refresh_from_db()
    assert candidate.status == "applied" and candidate.override_by == "ada"


@pytest.mark.parametrize(
    "content",
    [
        "Before cancelling an order, check that its status is pending.",
        "Ask the user for explicit confirmation before cancelling an order.",
        "Authenticate the user by email or by name and zip code before looking up "
        "their orders.",
        "When the user asks for the refund date, say 5 to 7 business days for cards.",
        "Collect every item to exchange into one list before calling the exchange "
        "tool.",
    ],
)
def test_lessons_that_follow_the_policy_are_clean(retail, content):
    candidate = _lesson(retail, content)
    assert candidate.audit["conflict"] == [], candidate.audit["conflict"]


def test_a_blocked_policy_breach_is_never_auto_applied(retail):
    retail.mode = LearningMode.BACKGROUND
    retail.auto_apply_threshold = 0.5
    retail.save()
    candidate = _lesson(retail, SKIP_AUTH, confidence=0.95)
    review.candidate_consider_auto_apply(candidate=candidate)
    candidate.refresh_from_db()
    assert candidate.status == "pending" and candidate.max_severity == "block"


def test_a_playbook_policy_applies_to_that_playbook_only(retail):
    """A policy set on one playbook checks its candidates, not another playbook's."""
    ns = NamespaceFactory(slug="shop")
    strict = make_playbook(ns, slug="strict")
    loose = make_playbook(ns, slug="loose")
    agent_policy_set(namespace=ns, playbook=strict, text=RETAIL_POLICY, actor="admin")
    assert _lesson(strict, SKIP_AUTH).max_severity == "block"
    assert _lesson(loose, SKIP_AUTH).max_severity == ""


def test_setting_the_policy_reaudits_pending_candidates(
    django_capture_on_commit_callbacks,
):
    """A pending candidate audited before the policy existed gets its block once an
    admin sets the policy (the re-audit goes through the queue)."""
    playbook = make_playbook(NamespaceFactory(slug="later"), slug="retail")
    candidate = _lesson(playbook, SKIP_AUTH)
    assert candidate.max_severity == ""
    with django_capture_on_commit_callbacks(execute=True):
        agent_policy_set(namespace=playbook.namespace, text=RETAIL_POLICY, actor="a")
    candidate.refresh_from_db()
    assert candidate.max_severity == "block"


def test_import_takes_the_system_message_as_policy_only_when_asked(tmp_path):
    """`import_runs --policy-from-system` stores the runs' system prompt (the airline
    policy of the tau-bench runs) as the namespace's agent policy; without the option
    nothing is stored."""
    fixture = FIXTURES / "gpt-4o-airline.json.gz"
    call_command(
        "import_runs",
        str(fixture),
        "--format",
        "tau-bench",
        "--namespace",
        "plain",
        "--limit",
        "2",
        "--no-progress",
    )
    assert not AgentPolicy.objects.filter(namespace__slug="plain").exists()
    call_command(
        "import_runs",
        str(fixture),
        "--format",
        "tau-bench",
        "--namespace",
        "airline",
        "--limit",
        "2",
        "--no-progress",
        "--policy-from-system",
    )
    policy = AgentPolicy.objects.get(namespace__slug="airline", playbook=None)
    assert policy.text.startswith("# Airline Agent Policy")
    assert "you must list the action details and obtain explicit user" in policy.text
    assert policy.source == "import:gpt-4o-airline.json.gz"
    playbook = make_playbook(Namespace.objects.get(slug="airline"), slug="airline-x")
    booked = _lesson(
        playbook, "Book the flight right away without asking the user to confirm."
    )
    [finding] = booked.audit["conflict"]
    assert finding["severity"] == "block"
    assert "obtain explicit user confirmation" in finding["related"][0]["text"]


def test_policy_api_reads_and_sets_the_agent_policy(admin_client_api):
    response = admin_client_api.put(
        "/api/v1/policy/", {"agent_policy": RETAIL_POLICY}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["agent_policy"].startswith("# Retail agent policy")
    assert admin_client_api.get("/api/v1/policy/").json()["agent_policy"]
    make_playbook(admin_client_api.namespace, slug="retail")
    response = admin_client_api.patch(
        "/api/v1/playbooks/retail/",
        {"agent_policy": "Never refund in cash."},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert AgentPolicy.objects.get(playbook__slug="retail").text == (
        "Never refund in cash."
    )
    response = admin_client_api.put(
        "/api/v1/policy/", {"agent_policy": ""}, format="json"
    )
    assert response.json()["agent_policy"] == ""
    assert not AgentPolicy.objects.filter(playbook=None).exists()
