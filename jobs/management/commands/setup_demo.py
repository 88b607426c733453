"""Everything `make run` needs after migrations: the default model, the content credentials' signer, the trained
prompt classifier and, in the embedded profile (or with DEMO_USER=true), a demo user with a key."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.accounts import api_key_create, ensure_user
from jobs.models import ApiKey


class Command(BaseCommand):
    help = "Build the default model and, where DEMO_USER is on, create the demo user (login and API key printed)."

    def handle(self, *args, **options) -> None:
        call_command("build_default_model")
        # The signer of every clip's content credentials: a local authority's when none is configured (in the
        # production profile too: `make run` is one host; a fleet configures its own, see docs/provenance.md).
        call_command("c2pa_setup", local_ca=True)
        # The prompt classifier, trained once per host before the workers start (minutes the first time).
        call_command("train_moderation")
        if not settings.DEMO_USER:
            self.stdout.write("no demo user (production profile; DEMO_USER=true makes one)")
            return
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo")
        user, created = ensure_user(username=username)
        if created:  # an existing user keeps the password and rights an operator gave it
            user.set_password(password)
            user.is_staff = user.is_superuser = True  # the demo user can also open the admin
            user.save(update_fields=["password", "is_staff", "is_superuser"])
            self.stdout.write(f"demo login: {username} / {password}")
        else:
            self.stdout.write(f"demo login: {username} (its password is left as it is)")
        # Keys are stored hashed, so a fresh one is printed each time (old demo keys are revoked).
        ApiKey.objects.filter(user=user, name="demo").delete()
        key = api_key_create(user_id=user.pk, name="demo")
        self.stdout.write(f"demo API key: {key}")
