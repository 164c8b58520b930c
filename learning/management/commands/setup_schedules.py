from django.core.management.base import BaseCommand

from learning.services.schedules import schedules_setup


class Command(BaseCommand):
    help = "Create or update the Django-Q2 schedules (idempotent: by name)."

    def handle(self, *args, **options):
        for name, what in schedules_setup().items():
            self.stdout.write(f"{what:8} {name}")
