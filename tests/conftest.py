from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.db.models.functions import Now
from rest_framework.test import APIClient

from jobs.accounts import api_key_create, ensure_user
from jobs.models import Job
from jobs.services import fairness
from tests.support.s3 import s3_server, s3_storage  # noqa: F401  (fixtures: a real S3 API on loopback)

pytest.register_assert_rewrite("tests.support.hotpath")  # imported by the tests after this file


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    # Each test writes its files (references, clips) into its own folder.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test starts with empty per-process caches: its database rows roll back, the caches would not (a
    queue summary published by one test made a later one's submissions 503 when the two ran within a second)."""
    from jobs import selectors
    from jobs.api import auth
    from jobs.services import costs

    selectors.forget_summaries()
    auth.forget_keys()
    costs.forget_cache()
    # A fresh channel layer per test: each test's asyncio.run is a new event loop, and a layer kept from an
    # earlier loop (its receive lock and buffers) could leave a cancelled receive waiting forever at the loop's
    # close (seen: test_a_user_holds_a_bounded_number_of_sockets hung in asyncio.run's task cancellation).
    from channels.layers import channel_layers

    channel_layers.backends = {}


@pytest.fixture(scope="session", autouse=True)
def content_credentials() -> str:
    """This run's local authority and the signer it issued (paths from tests/env_defaults.py): the authority's
    certificate (PEM), the one trust anchor a test reads our clips' manifests with."""
    from django.conf import settings

    from videogen import provenance

    cfg = settings.C2PA
    authority = Path(cfg["LOCAL_CA"])
    if not authority.exists():
        provenance.issue_local_credentials(
            authority_path=authority, cert_path=Path(cfg["SIGN_CERT"]), key_path=Path(cfg["SIGN_KEY"])
        )
    return authority.read_text()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from gpu_runner import registry
    from gpu_runner.tiny_model import build_tiny_wan

    path = registry.get("wan-tiny").path
    path.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: pytest-xdist's workers (make test-fast) share the folder.
    with open(path.parent / ".build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build_tiny_wan(path)
    return path


@pytest.fixture
def make_user(db):
    counter = iter(range(1_000_000))

    def make(name: str | None = None, tier: str = "free"):
        user, _ = ensure_user(username=name or f"user{next(counter)}", tier=tier)
        return user

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def api_key(user) -> str:
    return api_key_create(user_id=user.pk)


@pytest.fixture
def client_for(db):
    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user_id=user.pk)}")
        return client

    return make


@pytest.fixture
def api(user, client_for) -> APIClient:
    return client_for(user)


@pytest.fixture
def make_job(db, user):
    """A job placed directly in a state (for state-machine tests); submission has its own tests."""

    def make(state: str = "pending", owner=None, **fields) -> Job:
        defaults = dict(model="wan-tiny", prompt="a calm lake", seconds=4, width=128, height=128, seed=7, cost=1.0)
        owner = owner or user
        defaults["tier"] = getattr(getattr(owner, "account", None), "tier", "free")
        defaults.update(fields)
        job = Job.objects.create(user=owner, state=state, **defaults)
        if state == "queued" and job.vtag is None:
            # As a job entering the queue through a transition would be: tagged, and its wait started.
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(vtag=fairness.tag_new_job(job), queued_at=Now())
            job.refresh_from_db()
        return job

    return make


# Fixtures that start processes (the platform's roles, the delivery role, a browser's server): a test using one is
# an end-to-end test wherever it lives, so `make test-fast` (-m "not e2e") never starts a process.
STARTS_PROCESSES = {"platform_factory", "delivery_role", "live_server", "s3_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        in_e2e = "e2e" in item.path.parts[-3:-1]
        if in_e2e or STARTS_PROCESSES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    # The long, real-process tests run last so quick failures show first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") else 0)


@pytest.fixture(scope="session", autouse=True)
def _disconnect_stragglers(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end sessions that threads or child processes left open."""
    yield
    from django.db import connection

    if connection.settings_dict["NAME"] != connection.creation._get_test_db_name():
        return  # no test of this run used the database: none was created
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def e2e_database_url() -> str:
    """The test database, as a URL for the processes an end-to-end test starts."""
    from django.db import connection

    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]


@pytest.fixture(scope="session", autouse=True)
def moderation_model():
    """The prompt classifier, loaded once per run in this process (trained first when `make setup` has not, as
    `manage.py train_moderation` does before the workers start): the in-process checks and the cpu workers of every
    platform load it, and a worker never trains it."""
    from moderation import textmodel

    return textmodel.ensure()


@pytest.fixture
def platform_factory(tmp_path, tiny_model_dir, moderation_model, transactional_db):
    """Start the real roles (web, dispatcher, cpu, delivery and gpu qclusters) on the test database; stop them
    after."""
    from harness.platform import Platform

    started: list[Platform] = []

    def start(gpu: bool = True, workers: bool = True, **extra_env: str) -> Platform:
        plat = Platform(
            database_url=e2e_database_url(), redis_url=os.environ["REDIS_URL"], workdir=tmp_path, extra_env=extra_env
        )
        started.append(plat)
        return plat.start(gpu=gpu, workers=workers)

    yield start
    for plat in started:
        plat.stop()
        print(plat.logs())  # shown by pytest only when the test failed


@pytest.fixture
def delivery_role(transactional_db, tmp_path):
    """The real delivery role (`Q_CLUSTER_NAME=delivery manage.py qcluster`) alone on the test database, allowed to
    send to loopback receivers, with a 3 s attempt deadline; ready once a worker heartbeats."""
    import time

    from harness.platform import Platform
    from jobs.models import RoleHeartbeat

    plat = Platform(
        database_url=e2e_database_url(),
        redis_url=os.environ["REDIS_URL"],
        workdir=tmp_path,
        extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "3"},
    )
    plat.start_delivery()
    try:
        deadline = time.monotonic() + 90
        while not RoleHeartbeat.objects.filter(role="delivery").exists():
            plat.check_alive()
            assert time.monotonic() < deadline, plat.logs()
            time.sleep(0.2)
        yield plat
    finally:
        plat.stop()
        print(plat.logs())  # shown by pytest only when the test failed


@pytest.fixture
def wsgi_app() -> Iterator[tuple[WSGIHandler, list[str]]]:
    """Django's WSGI handler in this thread, counting hits; like django.test.Client it must not close the test
    transaction's connection at request boundaries."""
    handler = WSGIHandler()
    hits: list[str] = []

    def app(environ, start_response):
        hits.append(environ["PATH_INFO"])
        return handler(environ, start_response)

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield app, hits
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def hot(settings):
    """The routes served on the event loop (jobs.api.hot), with Django behind them (tests/support/hotpath.py)."""
    from tests.support.hotpath import hot_app

    return hot_app(settings)


@pytest.fixture
def paid(make_user):
    """A paid user and their API key."""
    from tests.support.hotpath import paid_user

    return paid_user(make_user)
