"""Access matrix: every API endpoint and console page, for every kind of caller.

The routes come from Django's URL resolver, so a new endpoint is covered the day it
lands: until it is classified in API or CONSOLE below, test_every_route_is_classified
fails and names it. Callers: anonymous, each role of namespace "acme" (agent, reviewer,
admin), an admin of another namespace, and (console only) a user with no role.
Expectations: anonymous gets 401 (API) or a redirect to the login page (console); a
role below the route's floor gets 403; a role at or above it is served (never 401,
403, 404, 405 or 5xx); the other namespace's admin gets 403/404 for acme's objects;
and no response ever contains an object of a namespace the caller does not belong to.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from learning.models import Membership, Namespace, Webhook
from learning.services.tokens import token_create
from playbooks import memories, skills
from playbooks import services as playbook_services
from tests.conftest import TokenClient
from tests.factories import CandidateFactory, StepFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

PUBLIC, AGENT, REVIEWER, ADMIN = "public", "agent", "reviewer", "admin"
RANK = {AGENT: 0, REVIEWER: 1, ADMIN: 2}

# route pattern -> {method: the lowest role that may call it}
API = {
    "healthz": {"GET": PUBLIC},
    "api/v1/runs/": {"GET": AGENT, "POST": AGENT},
    "api/v1/runs/<str:run_id>/": {"GET": AGENT},
    "api/v1/runs/<str:run_id>/steps/": {"POST": AGENT},
    "api/v1/runs/<str:run_id>/complete/": {"POST": AGENT},
    "api/v1/runs/<str:run_id>/feedback/": {"POST": AGENT},
    "api/v1/candidates/": {"GET": AGENT, "POST": AGENT},
    "api/v1/candidates/<str:candidate_id>/": {"GET": AGENT},
    "api/v1/candidates/<str:candidate_id>/approve/": {"POST": REVIEWER},
    "api/v1/candidates/<str:candidate_id>/deny/": {"POST": REVIEWER},
    "api/v1/candidates/<str:candidate_id>/conflict/": {"POST": REVIEWER},
    "api/v1/candidates/<str:candidate_id>/findings/<str:finding_id>/dismiss/": {
        "POST": REVIEWER
    },
    "api/v1/candidates/<str:candidate_id>/preview/": {"GET": AGENT},
    "api/v1/candidates/<str:candidate_id>/revert/": {"POST": REVIEWER},
    "api/v1/playbooks/": {"GET": AGENT, "POST": ADMIN},
    "api/v1/playbooks/<slug:slug>/": {"GET": AGENT, "PATCH": ADMIN},
    "api/v1/playbooks/<slug:slug>/strategies/": {"GET": AGENT, "POST": ADMIN},
    "api/v1/playbooks/<slug:slug>/strategies/<int:strategy_id>/stats/": {"GET": AGENT},
    "api/v1/playbooks/<slug:slug>/versions/": {"GET": AGENT},
    "api/v1/playbooks/<slug:slug>/versions/<int:number>/": {"GET": AGENT},
    "api/v1/playbooks/<slug:slug>/versions/<int:number>/rollback/": {"POST": ADMIN},
    "api/v1/playbooks/<slug:slug>/quality/": {"GET": AGENT, "POST": ADMIN},
    "api/v1/playbooks/<slug:slug>/context/": {"GET": AGENT},
    "api/v1/playbooks/<slug:slug>/rollout/": {
        "GET": AGENT,
        "PUT": ADMIN,
        "DELETE": ADMIN,
    },
    "api/v1/playbooks/<slug:slug>/rollout/promote/": {"POST": ADMIN},
    "api/v1/playbooks/<slug:slug>/rollout/abort/": {"POST": ADMIN},
    "api/v1/skills/": {"GET": AGENT, "POST": ADMIN},
    "api/v1/skills/<slug:slug>/": {"GET": AGENT, "PUT": ADMIN},
    "api/v1/skills/<slug:slug>/versions/": {"GET": AGENT},
    "api/v1/skills/<slug:slug>/versions/<int:number>/rollback/": {"POST": ADMIN},
    "api/v1/memories/": {"GET": AGENT},
    "api/v1/policy/": {"GET": AGENT, "PUT": ADMIN},
    "api/v1/otel/v1/traces": {"POST": AGENT},
    "api/v1/otel/v1/traces/": {"POST": AGENT},
    "api/v1/exports/<str:export_format>/": {"GET": REVIEWER},
    "api/v1/webhooks/": {"GET": ADMIN, "POST": ADMIN},
    "api/v1/webhooks/<int:webhook_id>/": {"GET": ADMIN, "DELETE": ADMIN},
    "api/v1/webhooks/<int:webhook_id>/deliveries/": {"GET": ADMIN},
    "mcp": {"POST": AGENT},  # MCP over streamable HTTP (tools check their action)
    "mcp/": {"POST": AGENT},
    "api/v1/schema/": {"GET": PUBLIC},
    "api/v1/docs/": {"GET": PUBLIC},
}

CONSOLE = {
    "login/": {"GET": PUBLIC},
    "logout/": {"POST": PUBLIC},
    "": {"GET": REVIEWER},
    "queue/": {"GET": REVIEWER},
    "candidates/bulk/": {"POST": REVIEWER},
    "candidates/undo/": {"POST": REVIEWER},
    "candidates/<int:pk>/": {"GET": REVIEWER},
    "candidates/<int:pk>/approve/": {"POST": REVIEWER},
    "candidates/<int:pk>/deny/": {"POST": REVIEWER},
    "candidates/<int:pk>/conflict/": {"POST": REVIEWER},
    "candidates/<int:pk>/edit/": {"POST": REVIEWER},
    "candidates/<int:pk>/findings/<str:finding_id>/dismiss/": {"POST": REVIEWER},
    "candidates/<int:pk>/release/": {"POST": REVIEWER},
    "candidates/<int:pk>/reopen/": {"POST": REVIEWER},
    "candidates/<int:pk>/recall/": {"GET": REVIEWER},
    "memories/": {"GET": REVIEWER},
    "memories/<int:memory_id>/": {"GET": REVIEWER, "POST": ADMIN},
    "memories/<int:memory_id>/retire/": {"POST": ADMIN},
    "guidance/<slug:ns>/": {"GET": ADMIN},
    "guidance/<slug:ns>/guidelines/": {"POST": ADMIN},
    "guidance/<slug:ns>/reasons/": {"POST": ADMIN},
    "guidance/<slug:ns>/tags/": {"POST": ADMIN},
    "runs/": {"GET": REVIEWER},
    "runs/<uuid:pk>/": {"GET": REVIEWER},
    "activity/": {"GET": REVIEWER},
    "dashboard/": {"GET": REVIEWER},
    "playbooks/": {"GET": REVIEWER, "POST": ADMIN},
    "playbooks/<slug:ns>/_skills/": {"GET": ADMIN, "POST": ADMIN},
    "playbooks/<slug:ns>/_skills/<slug:slug>/": {"GET": ADMIN, "POST": ADMIN},
    "playbooks/<slug:ns>/_skills/<slug:slug>/versions/<int:number>/rollback/": {
        "POST": ADMIN
    },
    "playbooks/<slug:ns>/_policy/": {"GET": ADMIN, "POST": ADMIN},
    "playbooks/<slug:ns>/_candidates/<int:candidate_id>/revert/": {"POST": REVIEWER},
    "playbooks/<slug:ns>/<slug:slug>/": {"GET": REVIEWER},
    "playbooks/<slug:ns>/<slug:slug>/settings/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/strategies/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/edit/": {
        "GET": ADMIN,
        "POST": ADMIN,
    },
    "playbooks/<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/retire/": {
        "POST": ADMIN
    },
    "playbooks/<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/move/": {
        "POST": ADMIN
    },
    "playbooks/<slug:ns>/<slug:slug>/strategies/<int:strategy_id>/stats/": {
        "GET": REVIEWER
    },
    "playbooks/<slug:ns>/<slug:slug>/history/": {"GET": REVIEWER},
    "playbooks/<slug:ns>/<slug:slug>/versions/<int:number>/rollback/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/quality/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/rollout/policy/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/rollout/promote/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/rollout/abort/": {"POST": ADMIN},
    "playbooks/<slug:ns>/<slug:slug>/recall/": {"GET": REVIEWER},
    "playbooks/<slug:ns>/<slug:slug>/compare/": {"GET": REVIEWER},
}

# Django's own admin site: staff only, checked separately below.
SKIPPED_PREFIXES = ("admin/",)

ACME_MARK = "acme-only-7c1e"
FOREIGN_MARK = "foreign-only-9b4d"


def all_routes() -> list[str]:
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    return sorted(
        {
            r
            for r in walk(get_resolver().url_patterns)
            if not r.startswith(SKIPPED_PREFIXES)
        }
    )


def test_every_route_is_classified():
    """Every URL the project serves is in the matrix (or explicitly skipped), and the
    matrix lists no route that no longer exists."""
    routes = set(all_routes())
    classified = set(API) | set(CONSOLE)
    assert sorted(routes - classified) == [], (
        "classify these routes in the access matrix"
    )
    assert sorted(classified - routes) == [], "these classified routes no longer exist"


def test_api_methods_match_the_views():
    """The methods the matrix checks for each API route are the ones its view serves."""
    by_route = {}

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                by_route[prefix + str(pattern.pattern)] = pattern.callback

    walk(get_resolver().url_patterns)
    for route, methods in API.items():
        view_class = getattr(by_route[route], "cls", None)
        if view_class is None:
            continue  # a plain Django view (healthz)
        served = {
            m.upper()
            for m in ("get", "post", "put", "patch", "delete")
            if hasattr(view_class, m)
        }
        assert served == set(methods), route


def _world(namespace: Namespace, mark: str) -> dict:
    """One of every object, each carrying `mark` in its text."""
    run = TrajectoryFactory(
        namespace=namespace,
        status="running",
        success_score=None,
        task_description=f"Rebook {mark}",
        external_id=f"ext-{mark}",
    )
    StepFactory(trajectory=run, index=0, description=f"lookup {mark}")
    playbook = playbook_services.playbook_create(
        namespace=namespace, slug="airline", name=f"Airline {mark}"
    )
    strategy, _version = playbook_services.strategy_add(
        playbook=playbook,
        actor="setup",
        type="helpful",
        description=f"Check the fare rules first {mark}",
    )
    candidate = CandidateFactory(
        namespace=namespace,
        playbook=playbook,
        content=f"Always confirm the cabin {mark}",
    )
    skill = skills.skill_create(
        namespace=namespace,
        slug="refund",
        text=f"1. Look up the order {mark}\n",
        actor="setup",
    )
    memory = memories.memory_create(
        namespace=namespace,
        kind="durable_fact",
        content=f"Basic economy cannot be changed {mark}",
    )
    webhook = Webhook.objects.create(
        namespace=namespace,
        url=f"https://hooks.example/{mark}",
        secret="s3cret-" + mark,
        description=mark,
    )
    return {
        "namespace": namespace,
        "run": run,
        "playbook": playbook,
        "strategy": strategy,
        "candidate": candidate,
        "skill": skill,
        "webhook": webhook,
        "memory": memory,
    }


def _url(route: str, world: dict) -> str:
    """Fill a route's converters with the objects of `world`."""
    values = {
        "<str:run_id>": str(world["run"].id),
        "<uuid:pk>": str(world["run"].id),
        "<str:candidate_id>": str(world["candidate"].pk),
        "<int:candidate_id>": str(world["candidate"].pk),
        "<int:pk>": str(world["candidate"].pk),
        "<int:strategy_id>": str(world["strategy"].pk),
        "<int:number>": "1",
        "<int:webhook_id>": str(world["webhook"].pk),
        "<str:finding_id>": "0123456789ab",
        "<int:memory_id>": str(world["memory"].pk),
        "<str:export_format>": "episodes",
        "<slug:ns>": world["namespace"].slug,
        "<slug:slug>": world["skill"].slug
        if "skills" in route
        else world["playbook"].slug,
    }
    path = "/" + route
    for converter, value in values.items():
        path = path.replace(converter, value)
    assert "<" not in path, f"no test value for a converter in {route}"
    if route.endswith("/context/") or route.endswith("/recall/"):
        path += "?task=rebook"
    return path


ABSOLUTE_PARAMS = ("_id>", "<int:pk>", "<uuid:pk>", "<slug:ns>")


def _has_object_params(route: str) -> bool:
    """Whether the route names an object absolutely (an id, or acme's namespace slug).
    Slugs and version numbers are relative to the caller's namespace: another
    namespace's `airline` playbook is its own, and serving it is no leak."""
    return any(param in route for param in ABSOLUTE_PARAMS)


def _body(response) -> str:
    raw = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    return raw.decode(errors="replace")


def _call(client, method: str, path: str):
    if method == "GET":
        return client.get(path)
    kwargs = (
        {"content_type": "application/json", "data": "{}"}
        if path.startswith("/api/")
        else {}
    )
    return getattr(client, method.lower())(path, **kwargs)


def _order(items):
    """Reads first, then writes, deletes last: a write must not hide a later check."""
    rank = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 3}

    def key(item):
        route, method = item[0], item[1]
        final = any(word in route for word in ("retire/", "revert/", "rollback/"))
        return 2 if final and method != "GET" else rank[method]

    return sorted(items, key=key)


@pytest.fixture
def worlds(db):
    acme = _world(Namespace.objects.create(slug="acme"), ACME_MARK)
    other = _world(Namespace.objects.create(slug="elsewhere"), FOREIGN_MARK)
    return acme, other


def _api_callers():
    callers = {"anonymous": (None, TokenClient.__mro__[1]())}
    for role in (AGENT, REVIEWER, ADMIN):
        token, raw = token_create(name=f"{role}-tok", namespace_slug="acme", role=role)
        callers[role] = (role, TokenClient(raw, token))
    token, raw = token_create(
        name="foreign-admin", namespace_slug="elsewhere", role=ADMIN
    )
    callers["foreign-admin"] = ("foreign", TokenClient(raw, token))
    return callers


def _check(kind, who, role, floor, route, method, response, acme, other, failures):
    status = response.status_code
    body = _body(response) if method == "GET" and status < 400 else ""
    label = f"{kind} {who} {method} {route} -> {status}"
    if status >= 500:
        failures.append(f"{label}: server error")
        return
    if floor == PUBLIC:
        ok = status < 400 or (route == "logout/" and status in (302, 405))
    elif role is None:  # anonymous
        ok = (
            status == 401
            if kind == "api"
            else (status == 302 and response["Location"].startswith("/login/"))
        )
    elif role == "foreign":
        ok = (
            status in (403, 404)
            if _has_object_params(route)
            else (status not in (401, 403, 404, 405))
        )
        if ACME_MARK in body or str(acme["run"].id) in body:
            failures.append(f"{label}: leaks acme's objects to another namespace")
    elif role == "nobody":
        ok = status in (403, 404)
    elif RANK[role] < RANK[floor]:
        ok = status == 403
    else:
        ok = status not in (401, 403, 404, 405) and status < 500
    if role not in (None, "foreign") and (
        FOREIGN_MARK in body or str(other["run"].id) in body
    ):
        failures.append(f"{label}: leaks another namespace's objects")
    if not ok:
        failures.append(f"{label}: expected {floor} access")


def test_api_access_matrix(worlds):
    """Every API route × method × caller gets the status its role allows, and no
    response carries another namespace's objects."""
    acme, other = worlds
    callers = _api_callers()
    failures: list[str] = []
    calls = [
        (route, method, floor)
        for route, methods in API.items()
        for method, floor in methods.items()
    ]
    for route, method, floor in _order(calls):
        for who, (role, client) in callers.items():
            if role == ADMIN and method == "DELETE":
                continue  # done last, below
            response = _call(client, method, _url(route, acme))
            _check(
                "api", who, role, floor, route, method, response, acme, other, failures
            )
    # Deleting works for acme's admin (and only now, so it cannot hide other checks).
    role, client = callers[ADMIN]
    for route, method, floor in calls:
        if method == "DELETE":
            response = _call(client, method, _url(route, acme))
            _check(
                "api",
                ADMIN,
                role,
                floor,
                route,
                method,
                response,
                acme,
                other,
                failures,
            )
    assert failures == [], "\n".join(failures)


def _console_callers():
    User = get_user_model()
    callers = {"anonymous": (None, Client())}
    for who, role, namespace in [
        (REVIEWER, REVIEWER, "acme"),
        (ADMIN, ADMIN, "acme"),
        ("foreign-admin", ADMIN, "elsewhere"),
        ("nobody", None, None),
    ]:
        user = User.objects.create_user(username=f"u-{who}", password="pw-123456789")
        if namespace:
            Membership.objects.create(
                user=user, role=role, namespace=Namespace.objects.get(slug=namespace)
            )
        client = Client()
        client.force_login(user)
        label = "foreign" if who == "foreign-admin" else (role or "nobody")
        callers[who] = (label, client)
    return callers


def test_console_access_matrix(worlds):
    """Every console page and action × caller: anonymous is sent to log in, a user
    with no role or too low a role gets 403, the other namespace's admin cannot see or
    touch acme's objects, and no page shows another namespace's objects."""
    acme, other = worlds
    callers = _console_callers()
    failures: list[str] = []
    calls = [
        (route, method, floor)
        for route, methods in CONSOLE.items()
        for method, floor in methods.items()
    ]
    for route, method, floor in _order(calls):
        for who, (role, client) in callers.items():
            if route == "logout/":
                continue  # would end the session the other checks need
            response = _call(client, method, _url(route, acme))
            if role == "nobody" and floor == PUBLIC:
                role = None
            _check(
                "console",
                who,
                role,
                floor,
                route,
                method,
                response,
                acme,
                other,
                failures,
            )
    assert failures == [], "\n".join(failures)


def test_django_admin_site_is_staff_only(worlds):
    """The Django admin sends anonymous callers and non-staff reviewers to its login."""
    assert Client().get("/admin/").status_code == 302
    reviewer = get_user_model().objects.create_user(
        username="rev", password="pw-123456789"
    )
    client = Client()
    client.force_login(reviewer)
    response = client.get("/admin/learning/trajectory/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
