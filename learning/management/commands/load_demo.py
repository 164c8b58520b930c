"""python manage.py load_demo: the demo namespace, its runs, console users and agent token."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from learning.importers import runs_import
from learning.reflectors.offline.rules import rules_check
from learning.services.demo import (
    DEMO_USERS,
    demo_agent_token_ensure,
    demo_users_ensure,
)
from learning.services.tokens import namespace_get_or_create

FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "gpt-4o-airline.json.gz"
# The airline domain's reflection rules: data the demo namespace owns, not engine code.
RULES = Path(settings.BASE_DIR) / "fixtures" / "tau-bench" / "airline-rules.json"
TOKEN_FILE = Path(settings.BASE_DIR) / "var" / "demo-agent-token.txt"


class Command(BaseCommand):
    help = (
        "Load the demo (idempotent): namespace 'demo' with the tau-bench airline runs "
        "and the airline reflection rules (fixtures/tau-bench/airline-rules.json), "
        "console users reviewer/reviewer-demo and admin/admin-demo, and an agent token "
        "in var/demo-agent-token.txt."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", default="demo")
        parser.add_argument("--limit", type=int, help="import at most this many runs")
        parser.add_argument("--token-file", default=str(TOKEN_FILE))

    def handle(self, *args, namespace, limit, token_file, **options):
        if not FIXTURE.is_file():
            raise CommandError(f"the demo fixture is missing: {FIXTURE}")
        ns = namespace_get_or_create(slug=namespace)
        # The rules first: the runs imported next are reflected with them.
        rules = json.loads(RULES.read_text())
        problems = rules_check(rules)
        if problems:
            raise CommandError(f"{RULES}: {'; '.join(problems)}")
        if ns.reflection_rules != rules:
            ns.reflection_rules = rules
            ns.save(update_fields=["reflection_rules"])
        report = runs_import(
            path=FIXTURE,
            fmt="tau-bench",
            namespace=ns,
            agent="gpt-4o-airline",
            limit=limit,
            domain="airline",
        )
        if report.rejected:
            raise CommandError(
                "demo runs rejected: "
                + "; ".join(f"{r.where}: {r.reason}" for r in report.rejected[:5])
            )
        demo_users_ensure(namespace=ns)
        raw, created = demo_agent_token_ensure(namespace=ns, path=Path(token_file))
        self.stdout.write(
            f"Demo namespace '{ns.slug}': {report.created} runs imported, "
            f"{report.existing} already there."
        )
        for username, password, role in DEMO_USERS:
            self.stdout.write(f"  console login ({role}): {username} / {password}")
        self.stdout.write(
            f"  agent token ({'new' if created else 'reused'}, in {token_file}): {raw}"
        )
