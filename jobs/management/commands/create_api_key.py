"""manage.py create_api_key USERNAME [--tier free|paid|internal]: the new key is the last line of the output."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from jobs.accounts import api_key_create, ensure_user
from jobs.models import Tier


class Command(BaseCommand):
    help = "Create a user if needed and print a new API key for it (the key is the last line)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tier", choices=Tier.values, default=None)
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, username: str, tier: str | None, name: str, **options) -> None:
        user, created = ensure_user(username=username, tier=tier)
        raw = api_key_create(user_id=user.pk, name=name)
        verb = "created user" if created else "user"
        self.stdout.write(f"{verb} {user.username} (tier {user.account.tier})")
        self.stdout.write(raw)
