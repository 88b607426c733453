"""The invariants' floor: the bare DRF reference (benchmarks/reference) plus only what the project's
invariants require of a submission and a status read, in the reference's own style and serving stack
(Django + DRF on gunicorn with 4 sync workers, ORM calls, persistent connections).

`make bench` serves it beside the reference and the project, so one run shows how far the invariants alone
take the reference below itself, and how close the project comes to that floor. It is not the project and
not a second implementation of it: no tiers, no policy, no moderation, no idempotency, no scheduler.

POST /jobs (bearer key) does, in this order, what every accepted submission must:
  - authenticate the key (an in-process dict: the project caches keys per process too);
  - count the request in two rate-limit buckets shared by all processes (one pipelined Redis round trip);
  - validate the body (a DRF serializer);
  - in one transaction of two round trips: lock the user's account row (caps and credits are decided under
    it) and count the unfinished and the waiting jobs (each cut at its cap); then insert the job, its audit
    event and its stage task, update the account and commit.
GET /jobs/<public_id> (bearer key): authenticate, one rate-limit bucket, one SELECT by id and owner.

    FLOOR_DATABASE_URL=postgres://... FLOOR_USERS=1024 gunicorn -w 4 floor:application
Keys are "floor-<n>" for n below FLOOR_USERS (accounts created by migrate.py).
"""

from __future__ import annotations

import os
import secrets
import sys
import time

import dj_database_url
import django
import redis
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="floor-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "rest_framework", "floorjobs"],
        DATABASES={"default": dict(dj_database_url.parse(os.environ["FLOOR_DATABASE_URL"]), CONN_MAX_AGE=60)},
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    sys.path.insert(0, os.path.dirname(__file__))
    django.setup()

from django.db import connection
from django.urls import path
from floorjobs.models import Job
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

USERS = int(os.environ.get("FLOOR_USERS", "1024"))
KEYS = {f"floor-{n}": n for n in range(USERS)}  # key -> user id
CAPS = (32, 50)  # the unfinished and waiting counts are cut at the paid tier's caps, as the project cuts them
REDIS = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def authenticate(request) -> int | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return KEYS.get(header[7:]) if header.startswith("Bearer ") else None


def count(user_id: int, buckets: tuple[str, ...]) -> None:
    window = int(time.time() // 60)
    pipe = REDIS.pipeline(transaction=False)
    for bucket in buckets:
        key = f"floor:{bucket}:{user_id}:{window}"
        pipe.incr(key)
        pipe.expire(key, 61, nx=True)
    pipe.execute()


# The submission's transaction in the fewest round trips the decision allows: the caps and credits are decided
# in Python (as the project decides them, in pure functions) between the reads and the writes, so two
# messages, each several statements (psycopg binds client-side here, as Django configures it).
READS = """
BEGIN;
SELECT credits, reserved FROM floorjobs_account WHERE user_id = %s FOR UPDATE;
SELECT count(*) FROM (SELECT 1 FROM floorjobs_job WHERE user_id = %s AND state = 'pending' LIMIT %s) AS unfinished;
SELECT count(*) FROM (SELECT 1 FROM floorjobs_job WHERE user_id = %s AND state = 'pending' LIMIT %s) AS waiting
"""
WRITES = """
INSERT INTO floorjobs_job (public_id, user_id, state, prompt, credits, created_at)
    VALUES (%s, %s, 'pending', %s, 1, now()) RETURNING id, created_at;
INSERT INTO floorjobs_event (job_id, kind, created_at) VALUES (currval('floorjobs_job_id_seq'), 'submitted', now());
INSERT INTO floorjobs_task (key, payload) VALUES ('cpu', 'moderate ' || currval('floorjobs_job_id_seq'));
UPDATE floorjobs_account SET reserved = reserved + 1 WHERE user_id = %s;
COMMIT
"""


class JobIn(serializers.Serializer):
    prompt = serializers.CharField(max_length=4000)


class Jobs(APIView):
    def post(self, request):
        user_id = authenticate(request)
        if user_id is None:
            return Response({"error": "unauthorized"}, status=401)
        count(user_id, ("requests", "submits"))
        s = JobIn(data=request.data)
        s.is_valid(raise_exception=True)
        public_id = f"video_{secrets.token_hex(12)}"
        with connection.cursor() as cursor:
            try:
                # Message 1: open the transaction, lock the account, count (two sets, each cut at its cap).
                cursor.execute(READS, [user_id, user_id, CAPS[0], user_id, CAPS[1]])
                cursor.nextset()  # past BEGIN's result
                credits, reserved = cursor.fetchone()
                counts = []
                for _ in CAPS:
                    cursor.nextset()
                    counts.append(cursor.fetchone()[0])
                if any(n >= cap for n, cap in zip(counts, CAPS, strict=True)) or credits - reserved < 1:
                    cursor.execute("ROLLBACK")
                    return Response({"error": "refused"}, status=429)
                # Message 2: the job, its event, its stage task, the account's reservation; commit.
                cursor.execute(WRITES, [public_id, user_id, s.validated_data["prompt"], user_id])
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            _, created_at = cursor.fetchone()  # the first result: the job insert's RETURNING
        return Response({"id": public_id, "status": "pending", "created_at": created_at}, status=201)


class OneJob(APIView):
    def get(self, request, public_id):
        user_id = authenticate(request)
        if user_id is None:
            return Response({"error": "unauthorized"}, status=401)
        count(user_id, ("requests",))
        job = (
            Job.objects.filter(public_id=public_id, user_id=user_id)
            .values("public_id", "state", "prompt", "created_at")
            .first()
        )
        return Response(job, status=200 if job else 404)


urlpatterns = [path("jobs", Jobs.as_view()), path("jobs/<str:public_id>", OneJob.as_view())]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
