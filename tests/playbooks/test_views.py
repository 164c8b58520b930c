"""Admin pages: create and edit playbooks and strategies (plain forms and htmx), history
with rollback, skills and policy; admins only, per namespace, CSRF enforced."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from learning.models import Membership
from playbooks.models import HygienePolicy, PlaybookVersion, Skill, Strategy
from tests.factories import NamespaceFactory, make_playbook, make_strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def ns():
    return NamespaceFactory(slug="acme")


def login(ns, role="admin", username="ada"):
    user = get_user_model().objects.create_user(username, password="pw-123456")
    Membership.objects.create(user=user, namespace=ns, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_create_edit_and_roll_back_through_the_pages(ns):
    """An admin creates a playbook, adds, edits, moves and retires strategies (each a
    version) and rolls back from the history page."""
    client = login(ns)
    response = client.post(
        "/playbooks/",
        {
            "namespace": "acme",
            "slug": "airline",
            "name": "Airline",
            "scope": "team",
            "mode": "propose",
        },
    )
    assert (
        response.status_code == 302
        and response["Location"] == "/playbooks/acme/airline/"
    )
    base = "/playbooks/acme/airline"
    for text in ("Alpha advice.", "Beta advice."):
        assert (
            client.post(
                f"{base}/strategies/",
                {"type": "helpful", "description": text, "confidence": "0.7"},
            ).status_code
            == 302
        )
    a, b = Strategy.objects.order_by("pk")
    assert (
        client.post(
            f"{base}/strategies/{a.pk}/edit/",
            {
                "type": "helpful",
                "description": "Alpha, revised.",
                "context": "",
                "confidence": "0.8",
            },
        ).status_code
        == 302
    )
    assert (
        client.post(f"{base}/strategies/{b.pk}/move/", {"direction": "up"}).status_code
        == 302
    )
    assert client.post(f"{base}/strategies/{a.pk}/retire/").status_code == 302
    versions = list(
        PlaybookVersion.objects.order_by("number").values_list("number", "change_kind")
    )
    assert versions == [
        (1, "create"),
        (2, "edit"),
        (3, "edit"),
        (4, "edit"),
        (5, "edit"),
        (6, "edit"),
    ]
    page = client.get(f"{base}/history/")
    assert page.status_code == 200 and b"Alpha, revised." in page.content
    assert client.post(f"{base}/versions/3/rollback/").status_code == 302
    v7 = PlaybookVersion.objects.get(number=7)
    assert v7.content == PlaybookVersion.objects.get(number=3).content
    detail = client.get(f"{base}/")
    assert b"Alpha advice." in detail.content and b"version 7" in detail.content


def test_htmx_returns_the_strategies_fragment_and_errors_name_fields(ns):
    """With htmx, adding returns just the #strategies fragment; a blank description is a
    400 with the form error, and no version is made."""
    client = login(ns)
    make_playbook(ns, "airline")
    url = "/playbooks/acme/airline/strategies/"
    ok = client.post(
        url,
        {
            "type": "harmful",
            "description": "Refunding basic economy.",
            "confidence": "0.6",
        },
        HTTP_HX_REQUEST="true",
    )
    assert ok.status_code == 200
    html = ok.content.decode()
    assert html.lstrip().startswith('<section id="strategies"') and "<html" not in html
    assert "Avoid refunding basic economy." in html
    bad = client.post(
        url,
        {"type": "helpful", "description": "", "confidence": "2"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 400 and "This field is required." in bad.content.decode()
    assert PlaybookVersion.objects.count() == 2


def test_only_admins_of_the_namespace_and_csrf(ns):
    """A reviewer may read but every change is 403; an admin of another namespace gets
    403 for this one;
    anonymous users are sent to log in; a POST without a CSRF token is refused."""
    make_strategy(make_playbook(ns, "airline"), "Alpha.")
    admin = login(ns, username="adm")
    assert (
        b"Roll back to version 1"
        in admin.get("/playbooks/acme/airline/history/").content
    )
    reviewer = login(ns, role="reviewer", username="rev")
    page = reviewer.get("/playbooks/acme/airline/")
    assert page.status_code == 200 and b"Add a strategy" not in page.content
    assert reviewer.get("/playbooks/").status_code == 200
    assert b"Roll back" not in reviewer.get("/playbooks/acme/airline/history/").content
    assert (
        reviewer.post(
            "/playbooks/acme/airline/strategies/",
            {"type": "helpful", "description": "x", "confidence": "0.5"},
        ).status_code
        == 403
    )
    assert (
        reviewer.post(
            "/playbooks/",
            {"namespace": "acme", "slug": "x", "scope": "team", "mode": "propose"},
        ).status_code
        == 403
    )
    assert reviewer.get("/playbooks/acme/_policy/").status_code == 403
    other_ns = NamespaceFactory(slug="elsewhere")
    other = login(other_ns, username="oth")
    assert other.get("/playbooks/acme/airline/").status_code == 403
    assert other.post("/playbooks/acme/airline/versions/1/rollback/").status_code == 403
    assert Client().get("/playbooks/").status_code == 302
    user = get_user_model().objects.create_user("csrf", password="pw-123456")
    Membership.objects.create(user=user, namespace=ns, role="admin")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert (
        strict.post(
            "/playbooks/acme/airline/strategies/",
            {"type": "helpful", "description": "x", "confidence": "0.5"},
        ).status_code
        == 403
    )


def test_index_query_count(ns, django_assert_num_queries):
    """The playbook list costs the same for three playbooks as for one."""
    client = login(ns)
    for slug in ("airline", "retail", "telecom"):
        make_strategy(make_playbook(ns, slug), "advice")
    PlaybookVersion.objects.filter(number=2).update(flagged=True, flag_reason="worse")
    client.get("/playbooks/")
    # session, user, role check, admin namespaces, playbooks, flagged prefetch
    with django_assert_num_queries(6):
        response = client.get("/playbooks/")
    assert response.content.decode().count("flagged: 2") == 3


def test_skill_and_policy_pages(ns):
    """Skills are created, edited into versions and rolled back; the policy form saves
    one entry per line."""
    client = login(ns)
    assert (
        client.post(
            "/playbooks/acme/_skills/",
            {"slug": "rebook", "name": "Rebook", "text": "one\n"},
        ).status_code
        == 302
    )
    assert (
        client.post(
            "/playbooks/acme/_skills/rebook/", {"text": "one\ntwo\n"}
        ).status_code
        == 302
    )
    page = client.get("/playbooks/acme/_skills/rebook/")
    assert b"+two" in page.content
    assert (
        client.post("/playbooks/acme/_skills/rebook/versions/1/rollback/").status_code
        == 302
    )
    assert Skill.objects.get().text == "one\n"
    response = client.post(
        "/playbooks/acme/_policy/",
        {
            "denied_tools": "rm\ncurl",
            "egress_allowlist": "*.airline.test",
            "allowed_tools": "",
            "sensitive_paths": "/etc",
            "protected_branches": "main",
        },
    )
    assert response.status_code == 302
    policy = HygienePolicy.objects.get(namespace=ns)
    assert policy.denied_tools == ["rm", "curl"] and policy.protected_branches == [
        "main"
    ]
    assert b"rm, curl" in client.get("/playbooks/acme/_policy/").content


def test_revert_page_action(ns):
    """An admin reverts an applied candidate from the console and is sent back."""
    from review.services import Actor, candidate_approve
    from tests.factories import CandidateFactory

    client = login(ns)
    pb = make_playbook(ns, "airline")
    candidate = CandidateFactory(namespace=ns, playbook=pb, content="Ask first.")
    candidate_approve(namespace=ns, candidate_id=candidate.pk, actor=Actor("r"))
    response = client.post(
        f"/playbooks/acme/_candidates/{candidate.pk}/revert/",
        {"next": "/playbooks/acme/airline/history/"},
    )
    assert (
        response.status_code == 302
        and response["Location"] == "/playbooks/acme/airline/history/"
    )
    assert not Strategy.objects.get(source_candidate=candidate).active
    evil = client.post(
        f"/playbooks/acme/_candidates/{candidate.pk}/revert/",
        {"next": "//evil.example/"},
    )
    assert evil["Location"] == "/playbooks/"


def _canary(ns, slug="airline"):
    """A playbook with a rollout policy and an approved lesson running as the canary."""
    from playbooks.rollout import rollout_policy_set
    from review.services import Actor, candidate_approve
    from tests.factories import CandidateFactory

    pb = make_playbook(ns, slug)
    make_strategy(pb, "Look up the reservation first.")
    rollout_policy_set(
        playbook=pb, share=0.5, min_runs_per_arm=20, margin=0.05, actor="ops"
    )
    candidate = CandidateFactory(
        namespace=ns, playbook=pb, content="Change the flight before the fare rules."
    )
    candidate_approve(namespace=ns, candidate_id=candidate.pk, actor=Actor("r"))
    pb.refresh_from_db()
    return pb


def _runs(pb, version, successes, total):
    from learning.models import Trajectory
    from tests.factories import TrajectoryFactory

    Trajectory.objects.bulk_create(
        [
            TrajectoryFactory.build(
                namespace=pb.namespace,
                playbook_versions=[f"{pb.slug}@{version}"],
                status="success" if i < successes else "failure",
                success_score=1.0 if i < successes else 0.0,
            )
            for i in range(total)
        ]
    )


def test_playbook_page_shows_the_rollout_and_promote_asks_first(ns):
    """The rollout panel names production and canary, the share, each cohort's runs
    and successes, the estimate with its interval and the rule. Without JavaScript,
    Promote first shows a confirmation page; confirming moves production."""
    client = login(ns)
    pb = _canary(ns)
    _runs(pb, 2, 18, 24)
    _runs(pb, 3, 20, 25)
    html = client.get("/playbooks/acme/airline/").content.decode()
    assert 'id="label-production">version 2<' in html
    assert 'id="label-canary">version 3<' in html and "50% of sessions" in html
    assert "<td>production</td><td>v2</td><td>24</td><td>18</td><td>75%</td>" in html
    assert "<td>canary</td><td>v3</td><td>25</td><td>20</td><td>80%</td>" in html
    assert "Canary − production success rate: <b>+5.0 points</b>" in html
    # the horizon (the first 20 of each) is undecided, so the sequence speaks
    assert "99% confidence sequence" in html and "Rule: No verdict before" in html
    assert "Decision: <b>undecided, still running</b>" in html
    assert 'hx-confirm="Promote version 3 to production?"' in html
    url = "/playbooks/acme/airline/rollout/promote/"
    ask = client.post(url)
    assert ask.status_code == 200 and b"Promote version 3 to production?" in ask.content
    pb.refresh_from_db()
    assert pb.production_version == 2
    done = client.post(url, {"confirm": "yes", "note": "ship it"})
    assert done.status_code == 302
    pb.refresh_from_db()
    assert pb.production_version == 3 and pb.canary_version is None
    history = client.get("/playbooks/acme/airline/history/").content.decode()
    assert "replaced by version 3 (promoted by ada: ship it)" in history
    assert "<b>promoted</b> by ada" in history


def test_htmx_abort_returns_the_rollout_fragment_and_reviewers_cannot(ns):
    """htmx sends confirm=yes after its dialog and gets the #rollout fragment back;
    the canary's lesson leaves the live strategies. Reviewers see the panel without
    buttons and are refused the action."""
    pb = _canary(ns)
    reviewer = login(ns, role="reviewer", username="rev")
    page = reviewer.get("/playbooks/acme/airline/").content.decode()
    assert 'id="label-canary"' in page and 'data-action="abort"' not in page
    assert (
        reviewer.post(
            "/playbooks/acme/airline/rollout/abort/", {"confirm": "yes"}
        ).status_code
        == 403
    )
    admin = login(ns)
    response = admin.post(
        "/playbooks/acme/airline/rollout/abort/",
        {"confirm": "yes"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="rollout"') and "<html" not in html
    assert "last: rolled back" in html and "aborted by ada" in html
    assert not Strategy.objects.filter(
        playbook=pb, active=True, description__startswith="Change the flight"
    ).exists()
    again = admin.post(
        "/playbooks/acme/airline/rollout/abort/",
        {"confirm": "yes"},
        HTTP_HX_REQUEST="true",
    )
    assert again.status_code == 409 and b"No rollout is running." in again.content


def test_policy_form_saves_names_errors_and_removes(ns):
    client = login(ns)
    make_playbook(ns, "airline")
    url = "/playbooks/acme/airline/rollout/policy/"
    bad = client.post(url, {"share": "1.5", "min_runs_per_arm": "10", "margin": "0"})
    assert bad.status_code == 400
    assert "Ensure this value is less than or equal to 0.99." in bad.content.decode()
    ok = client.post(url, {"share": "0.2", "min_runs_per_arm": "30", "margin": "0.05"})
    assert ok.status_code == 302
    from playbooks.models import RolloutPolicy

    policy = RolloutPolicy.objects.get()
    assert (policy.share, policy.min_runs_per_arm, policy.margin) == (0.2, 30, 0.05)
    assert (
        b"policy set, no canary yet" in client.get("/playbooks/acme/airline/").content
    )
    assert client.post(url, {"remove": "1"}).status_code == 302
    assert not RolloutPolicy.objects.exists()


def test_a_rolled_back_canary_is_flagged_in_history_with_the_reason(ns):
    """The gate rolls a worse canary back: history shows it never served, its trial
    rolled back with the figures, the flag, and production's spell still open."""
    from playbooks.rollout import rollout_gate_evaluate

    client = login(ns)
    pb = _canary(ns)
    _runs(pb, 2, 20, 24)
    _runs(pb, 3, 4, 24)
    rollout_gate_evaluate(playbook=pb)
    history = client.get("/playbooks/acme/airline/history/").content.decode()
    assert "Flagged by the quality gate: rolled back by the quality gate" in history
    assert "<b>rolled back</b> by system:quality-gate" in history
    assert "production v2 20/24 successes" in history
    assert "Never production." in history
    assert "Production from" in history and "until now" in history
    detail = client.get("/playbooks/acme/airline/").content.decode()
    assert "last: rolled back" in detail and 'id="label-canary"' not in detail
    assert (
        client.post("/playbooks/acme/airline/versions/1/rollback/").status_code == 302
    )
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 0


def test_detail_page_query_count_with_a_running_rollout(ns, django_assert_num_queries):
    """The playbook page with a running rollout costs the same for 10 runs as 200."""
    client = login(ns)
    pb = _canary(ns)
    _runs(pb, 2, 5, 10)
    client.get("/playbooks/acme/airline/")
    with django_assert_num_queries(12) as few:
        client.get("/playbooks/acme/airline/")
    _runs(pb, 3, 150, 200)
    with django_assert_num_queries(len(few.captured_queries)):
        client.get("/playbooks/acme/airline/")
