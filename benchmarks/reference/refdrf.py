"""Reference for the submit benchmark: the least a durable submit can do in DRF (validate, one INSERT, 201).

One module is the whole Django project: settings, the model, the view, the urls. Served by gunicorn.
"""

from __future__ import annotations

import os
import sys

import dj_database_url
import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="reference-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "rest_framework", "refjobs"],
        DATABASES={"default": dict(dj_database_url.parse(os.environ["REF_DATABASE_URL"]), CONN_MAX_AGE=60)},
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

from django.urls import path
from refjobs.models import Job
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class JobIn(serializers.Serializer):
    prompt = serializers.CharField(max_length=4000)


class Jobs(APIView):
    def post(self, request):
        s = JobIn(data=request.data)
        s.is_valid(raise_exception=True)
        job = Job.objects.create(prompt=s.validated_data["prompt"])
        return Response({"id": job.id, "status": job.status, "created_at": job.created_at}, status=201)


class OneJob(APIView):
    def get(self, request, pk):
        job = Job.objects.filter(pk=pk).values("id", "status", "prompt", "created_at").first()
        return Response(job, status=200 if job else 404)


urlpatterns = [path("jobs", Jobs.as_view()), path("jobs/<int:pk>", OneJob.as_view())]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
