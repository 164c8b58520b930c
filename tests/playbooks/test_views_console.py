"""Playbook pages for reviewers: the recall preview (what an agent gets for a typed
task), comparing any two versions with a word-level diff, and rollbacks that ask
before they happen."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from learning.models import Membership
from playbooks import services, skills
from playbooks.models import PlaybookVersion
from playbooks.versions import word_diff
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


def test_word_diff_marks_only_the_changed_words():
    assert word_diff("check the fare rules first", "check the refund rules first") == [
        ("", "check the "),
        ("del", "fare"),
        ("ins", "refund"),
        ("", " rules first"),
    ]
    assert word_diff("", "new text") == [("ins", "new text")]


def test_compare_any_two_versions(ns, django_assert_max_num_queries):
    """Added, removed and changed strategies between two versions; a changed text is
    a word-level diff; reviewers may read it."""
    pb = make_playbook(ns, "airline")
    kept = make_strategy(pb, "Check the fare rules first.")  # v2
    gone = make_strategy(pb, "Ask for the user id.")  # v3
    services.strategy_edit(
        playbook=pb,
        strategy_id=kept.pk,
        actor="ada",
        description="Check the refund rules first.",
    )  # v4
    services.strategy_retire(playbook=pb, strategy_id=gone.pk, actor="ada")  # v5
    make_strategy(pb, "Confirm before booking.")  # v6
    client = login(ns, role="reviewer", username="rita")
    with django_assert_max_num_queries(12):
        response = client.get("/playbooks/acme/airline/compare/?a=3&b=6")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Version 3 → version 6" in html
    assert "<del>fare</del><ins>refund</ins>" in html
    assert '+ <span class="badge">helpful</span> Confirm before booking.' in html
    assert '− <span class="badge">helpful</span> Ask for the user id.' in html
    default = client.get("/playbooks/acme/airline/compare/").content.decode()
    assert "Version 5 → version 6" in default
    history = client.get("/playbooks/acme/airline/history/").content.decode()
    assert "/playbooks/acme/airline/compare/?a=3&amp;b=4" in history


@pytest.mark.parametrize(
    "query,message", [("a=99", "a: no version 99"), ("b=x", "b: no version x")]
)
def test_compare_names_a_version_that_does_not_exist(ns, query, message):
    make_playbook(ns, "airline")
    response = login(ns).get(f"/playbooks/acme/airline/compare/?{query}")
    assert response.status_code == 400
    assert f"{message} of airline." in response.content.decode()


def test_compare_and_recall_stay_in_their_namespace(ns):
    make_playbook(ns, "airline")
    other = NamespaceFactory(slug="else")
    outsider = login(other, username="eve")
    for url in (
        "/playbooks/acme/airline/compare/",
        "/playbooks/acme/airline/recall/?task=rebook",
    ):
        assert outsider.get(url).status_code in (403, 404)
    assert login(ns).get("/playbooks/acme/nothing/compare/").status_code == 404


def test_recall_preview_shows_the_rendered_lines_an_agent_gets(ns):
    pb = make_playbook(ns, "airline")
    make_strategy(
        pb,
        "",
        type="harmful",
        polarity="avoid",
        when="the fare is basic economy",
        directive="rebook the flight",
    )
    client = login(ns, role="reviewer", username="rita")
    page = client.get("/playbooks/acme/airline/").content.decode()
    assert 'id="recall-card"' in page and "data-recall-hint>airline@2<" in page
    response = client.get(
        "/playbooks/acme/airline/recall/",
        {"task": "Rebook my basic economy fare flight", "budget_tokens": 800},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith("<section")
    assert "When the fare is basic economy, do not rebook the flight." in html
    assert "v2 ·" in html
    bad = client.get(
        "/playbooks/acme/airline/recall/",
        {"task": "x", "budget_tokens": "many"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 400
    assert "budget_tokens: Enter a whole number." in bad.content.decode()
    plain = client.get("/playbooks/acme/airline/recall/?task=rebook+basic+economy")
    assert plain.status_code == 200 and "<html" in plain.content.decode()


def test_rollbacks_ask_first(ns):
    """Rolling back a playbook or a skill is a form that asks for confirmation
    (console.js shows the question before it submits); the POST itself still works."""
    client = login(ns)
    pb = make_playbook(ns, "airline")
    make_strategy(pb, "Risky advice.")
    history = client.get("/playbooks/acme/airline/history/").content.decode()
    assert (
        'action="/playbooks/acme/airline/versions/1/rollback/" '
        'data-confirm="Roll back airline to version 1? Its content becomes version 3."'
    ) in history
    skill = skills.skill_create(namespace=ns, slug="refunds", text="v1\n", actor="ada")
    skills.skill_update(skill=skill, text="v2\n", actor="ada")
    page = client.get("/playbooks/acme/_skills/refunds/").content.decode()
    assert (
        'data-confirm="Roll back skill refunds to version 1? Its text becomes version 3."'
        in page
    )
    assert (
        client.post("/playbooks/acme/airline/versions/1/rollback/").status_code == 302
    )
    assert PlaybookVersion.objects.filter(playbook=pb).count() == 3
