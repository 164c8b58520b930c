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


def test_flagged_version_shows_banner_and_one_click_rollback(ns):
    """A version flagged by the quality gate is called out on the playbook page and its
    history offers the rollback to the version before it."""
    client = login(ns)
    pb = make_playbook(ns, "airline")
    make_strategy(pb, "Risky advice.")
    PlaybookVersion.objects.filter(playbook=pb, number=2).update(
        flagged=True,
        flag_reason="success rate 80% -> 50%",
        quality={
            "new": {"runs": 100, "success_rate": 0.5, "mean_score": 0.4},
            "previous": {"runs": 100, "success_rate": 0.0, "mean_score": 0.8},
            "baseline": 1,
            "p_value": 0.0001,
        },
    )
    detail = client.get("/playbooks/acme/airline/").content.decode()
    assert (
        "Version 2 is flagged by the quality gate: success rate 80% -&gt; 50%" in detail
    )
    history = client.get("/playbooks/acme/airline/history/").content.decode()
    assert 'action="/playbooks/acme/airline/versions/1/rollback/"' in history
    assert "success 0.0," in history
    assert (
        client.post("/playbooks/acme/airline/versions/1/rollback/").status_code == 302
    )
    assert Strategy.objects.filter(playbook=pb, active=True).count() == 0
