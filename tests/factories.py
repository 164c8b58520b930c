"""factory_boy factories for test data."""

import factory

from learning.models import (
    Feedback,
    LearningCandidate,
    Namespace,
    Step,
    Trajectory,
)
from learning.services.tokens import token_create


class NamespaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Namespace
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"ns-{n}")
    name = factory.LazyAttribute(lambda o: o.slug)


class TrajectoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trajectory

    namespace = factory.SubFactory(NamespaceFactory)
    external_id = factory.Sequence(lambda n: f"run-{n}")
    agent = "test-agent"
    task_description = factory.Sequence(
        lambda n: f"Change the flight of reservation R{n:04d}"
    )
    task_type = "airline.change_flight"
    status = "success"
    success_score = 1.0
    effective_score = factory.LazyAttribute(lambda o: o.success_score)


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    trajectory = factory.SubFactory(TrajectoryFactory)
    index = factory.Sequence(lambda n: n)
    type = "tool_call"
    tool = "get_reservation_details"
    description = "get_reservation_details(reservation_id=4WQ150)"


class FeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feedback

    trajectory = factory.SubFactory(TrajectoryFactory)
    feedback_type = "human"
    score = 0.5


class CandidateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LearningCandidate

    namespace = factory.SubFactory(NamespaceFactory)
    kind = "strategy_helpful"
    content = factory.Sequence(
        lambda n: (
            f"Confirm the cabin class with get_reservation_details before change #{n}"
        )
    )
    rationale = "Successful runs looked up the reservation first."
    confidence = 0.8


def make_token(namespace: str = "acme", role: str = "agent", name: str | None = None):
    """Returns (ApiToken, raw key)."""
    return token_create(
        name=name or f"{role}-token", namespace_slug=namespace, role=role
    )


def make_playbook(namespace=None, slug: str = "airline", **kwargs):
    """A playbook through the service (so it starts at version 1, empty)."""
    from playbooks.services import playbook_create

    namespace = namespace or NamespaceFactory(slug="acme")
    return playbook_create(namespace=namespace, slug=slug, name=slug.title(), **kwargs)


def make_strategy(
    playbook, description: str, *, type: str = "helpful", actor: str = "test", **kwargs
):
    """A strategy added by hand (a new playbook version); returns the Strategy."""
    from playbooks.services import strategy_add

    strategy, _ = strategy_add(
        playbook=playbook, actor=actor, type=type, description=description, **kwargs
    )
    return strategy
