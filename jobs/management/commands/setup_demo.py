"""Everything `make run` needs after migrations: the default model and a demo user with a key."""

from __future__ import annotations

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.accounts import api_key_create, ensure_user
from jobs.models import ApiKey


class Command(BaseCommand):
    help = "Build the default model and create the demo user (password and API key printed)."

    def handle(self, *args, **options) -> None:
        call_command("build_default_model")
        # The signer of every clip's content credentials: a local authority's when none is configured (in the
        # production profile too: `make run` is one host; a fleet configures its own, see README: Provenance).
        call_command("c2pa_setup", local_ca=True)
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo")
        user, _ = ensure_user(username=username, password=password)
        if not user.is_staff:
            user.is_staff = user.is_superuser = True  # the demo user can also open the admin
            user.save(update_fields=["is_staff", "is_superuser"])
        # Keys are stored hashed, so a fresh one is printed each time (old demo keys are revoked).
        ApiKey.objects.filter(user=user, name="demo").delete()
        key = api_key_create(user_id=user.pk, name="demo")
        self.stdout.write(f"demo login: {username} / {password}")
        self.stdout.write(f"demo API key: {key}")
