"""python manage.py create_token NAME --namespace NS --role ROLE"""

from django.core.management.base import BaseCommand, CommandError

from learning.models import Role
from learning.services.tokens import token_create


class Command(BaseCommand):
    help = "Create an API token for a namespace (created if needed); prints the token last."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--namespace", required=True)
        parser.add_argument("--role", choices=Role.values, default=Role.AGENT)

    def handle(self, *args, name, namespace, role, **options):
        try:
            token, raw = token_create(name=name, namespace_slug=namespace, role=role)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"Created {role} token '{name}' for namespace '{namespace}'. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw)
