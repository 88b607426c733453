"""Content credentials set-up: the signer every gpu runner and remote worker signs clips with (videogen.provenance)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from videogen import provenance


class Command(BaseCommand):
    help = (
        "Check the content credentials signer (C2PA_SIGN_CERT, C2PA_SIGN_KEY). When neither file exists, make a local "
        "certificate authority (C2PA_LOCAL_CA) and a signer it issues: always in the embedded profile, with "
        "--local-ca in the production profile."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--local-ca",
            action="store_true",
            help="make a local authority in the production profile too (only readers that trust it see the clips "
            "as trusted)",
        )

    def handle(self, *args, local_ca: bool, **options) -> None:
        cfg = settings.C2PA
        cert, key = Path(cfg["SIGN_CERT"]), Path(cfg["SIGN_KEY"])
        if not cert.exists() and not key.exists():
            if settings.DATABASE_URL and not local_ca:
                raise CommandError(
                    f"no content credentials signer: {cert} and {key} do not exist. Set C2PA_SIGN_CERT and "
                    "C2PA_SIGN_KEY to your signing certificate chain and key (every gpu and remote worker host "
                    "reads them; runners that cannot sign take no job), or run `manage.py c2pa_setup --local-ca`."
                )
            authority = Path(cfg["LOCAL_CA"])
            provenance.issue_local_credentials(authority_path=authority, cert_path=cert, key_path=key)
            self.stdout.write(
                f"content credentials: made a local authority ({authority}) and a signer it issued ({cert}); "
                "C2PA readers that trust the authority's certificate see this platform's videos as trusted"
            )
        try:
            subject = provenance.check_signer()
        except provenance.SigningError as exc:
            raise CommandError(f"content credentials cannot be signed: {exc}") from None
        self.stdout.write(f"content credentials: videos are signed as {subject}")
