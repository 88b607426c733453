"""The floor's tables: the rows the project's invariants make a submission touch, nothing more."""

from django.db import models


class Account(models.Model):
    user_id = models.IntegerField(unique=True)
    credits = models.IntegerField(default=1_000_000)
    reserved = models.IntegerField(default=0)


class Job(models.Model):
    public_id = models.CharField(max_length=40, unique=True)
    user_id = models.IntegerField()
    state = models.CharField(max_length=16, default="pending")
    prompt = models.TextField()
    credits = models.IntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "id"], name="floor_job_user_id"),
            models.Index(fields=["user_id"], condition=models.Q(state="pending"), name="floor_job_pending"),
        ]


class Event(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE)
    kind = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)


class Task(models.Model):
    """The stage task, in the broker's table shape (django-q2's ORM broker: key, payload, lock)."""

    key = models.CharField(max_length=100)
    payload = models.TextField()
    lock = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["key", "lock"], name="floor_task_key_lock")]
