"""`python manage.py mcp`: Flywheel's MCP server over stdio, for MCP clients that start
it as a subprocess (Claude Code, Claude Desktop, IDE agents). The token comes from
FLYWHEEL_TOKEN, the same tokens as the REST API; nothing but the protocol goes to
stdout (logs go to stderr)."""

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from learning.access import token_lookup
from learning.mcp import tools
from learning.mcp.server import mcp_server_build


class Command(BaseCommand):
    help = "Serve Flywheel's MCP tools over stdio (token from FLYWHEEL_TOKEN)."

    def handle(self, *args, **options):
        raw = os.environ.get("FLYWHEEL_TOKEN", "").strip()
        if not raw:
            raise CommandError(
                "Set FLYWHEEL_TOKEN to a Flywheel API token "
                "(python manage.py create_token NAME --namespace NS --role agent)."
            )
        token = token_lookup(raw)
        if token is None:
            raise CommandError("FLYWHEEL_TOKEN is not a valid (unrevoked) token.")
        self.stderr.write(
            f"Flywheel MCP server on stdio: namespace '{token.namespace.slug}', "
            f"token '{token.name}' ({token.role})."
        )
        # The tools run on another thread with its own connection; this one is done.
        connections.close_all()
        # The raw key, looked up again on every call: a revoked token stops at once.
        tools.caller.set(raw)
        mcp_server_build(manage_connections=True).run("stdio")
