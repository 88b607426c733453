from django.apps import AppConfig
from django.db.models.signals import post_migrate

MODERATORS = "Moderators"
# What a moderator may do in the admin, and nothing else: see and decide the review queue, see decisions.
MODERATOR_PERMISSIONS = (
    ("moderation", "view_review"),
    ("moderation", "change_review"),
    ("moderation", "view_moderationdecision"),
)


def ensure_moderators_group(**kwargs) -> None:
    """The Moderators group with exactly its permissions (after every migrate: permissions exist by then)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=MODERATORS)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in MODERATOR_PERMISSIONS
    ]
    group.permissions.set(wanted)


class ModerationConfig(AppConfig):
    name = "moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(ensure_moderators_group, sender=self)
