from django.apps import AppConfig
from django.db.models.signals import post_migrate

MODERATORS = "Moderators"
# What a moderator may do in the admin, and nothing else: see and decide the review queue, see decisions, see and
# resolve abuse flags, suspend and reinstate accounts (and see that audit trail).
MODERATOR_PERMISSIONS = (
    ("moderation", "view_review"),
    ("moderation", "change_review"),
    ("moderation", "view_moderationdecision"),
    ("moderation", "view_abuseflag"),
    ("moderation", "change_abuseflag"),
    ("moderation", "suspend_account"),
    ("moderation", "view_accountaction"),
)
SUPPORT = "Support"
# What support staff may do in the admin, and nothing else: look a user up with their jobs (and each job's events,
# remote run and moderation decisions), account, credit ledger, API keys (prefix and name; never mint, rename or
# revoke), notifications, webhook endpoints (never edit: the URL gets the user's data) and deliveries with their
# attempts; cancel jobs (change_job: the job admin has no form, only its cancel action) and send a delivery again
# (change_webhookdelivery: the replay action; every field is read-only). No credits, no reviews, no runners.
SUPPORT_PERMISSIONS = (
    ("auth", "view_user"),
    ("jobs", "view_job"),
    ("jobs", "change_job"),
    ("jobs", "view_jobevent"),
    ("jobs", "view_remotejob"),
    ("jobs", "view_account"),
    ("jobs", "view_creditentry"),
    ("jobs", "view_apikey"),
    ("moderation", "view_moderationdecision"),
    ("notifications", "view_notification"),
    ("notifications", "view_webhookendpoint"),
    ("notifications", "view_webhookdelivery"),
    ("notifications", "change_webhookdelivery"),
    ("notifications", "view_webhookattempt"),
)
GROUPS = {MODERATORS: MODERATOR_PERMISSIONS, SUPPORT: SUPPORT_PERMISSIONS}


def ensure_groups(using: str = "default", **kwargs) -> None:
    """Each staff group with exactly its permissions (after every migrate). The permissions of apps whose own
    post_migrate has not run yet (those after this one) are made first: making them is idempotent."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    for app_label in {app for perms in GROUPS.values() for app, _ in perms}:
        create_permissions(apps.get_app_config(app_label), verbosity=0, using=using)
    for name, permissions in GROUPS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(
            [
                Permission.objects.using(using).get(content_type__app_label=app, codename=codename)
                for app, codename in permissions
            ]
        )


class ModerationConfig(AppConfig):
    name = "moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(ensure_groups, sender=self)
