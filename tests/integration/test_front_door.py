"""The front door: bounded bodies, conditional reads, remembered keys, and the database hygiene of the hot tables."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import services
from jobs.accounts import ensure_user
from jobs.api import auth
from jobs.models import ApiKey, Job
from videogen.bodylimit import BodyLimitMiddleware

pytestmark = pytest.mark.django_db


# --- bodies are bounded before they are read ----------------------------------------------------------------


class EchoApp:
    """The application behind the middleware in these tests: answers with what it was given."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        reply = json.dumps({"length": headers.get(b"content-length", b"").decode(), "got": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": reply})


def http_scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict:
    return {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}


async def exchange(app, scope, chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Send the body in chunks (stopping once a response has started), return (status, body, chunks sent)."""
    comm = ApplicationCommunicator(app, scope)
    sent = 0
    for i, chunk in enumerate(chunks):
        await comm.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
        sent += 1
        if not await comm.receive_nothing(timeout=0.01):
            break
    start = await comm.receive_output(timeout=5)
    body = await comm.receive_output(timeout=5)
    await comm.wait(timeout=5)
    return start["status"], body["body"], sent


def test_declared_oversize_is_refused_before_anything_is_read(settings):
    settings.BODY_MAX_BYTES = 1000
    inner = EchoApp()
    scope = http_scope("/v1/videos/video_x/cancel", [(b"content-length", b"1500000000")])
    status, body, sent = asyncio.run(exchange(BodyLimitMiddleware(inner), scope, [b"x" * 100] * 3))
    assert status == 413 and sent == 1 and inner.calls == 0
    error = json.loads(body)["error"]
    assert error["code"] == "body_too_large" and "at most 1000 bytes" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_chunked_oversize_is_cut_off_at_the_limit(settings):
    settings.BODY_MAX_BYTES = 1000
    inner = EchoApp()
    scope = http_scope("/v1/notifications", [(b"transfer-encoding", b"chunked")])
    status, _, sent = asyncio.run(exchange(BodyLimitMiddleware(inner), scope, [b"x" * 300] * 100))
    assert status == 413 and inner.calls == 0
    assert sent == 4  # refused on the chunk that passed 1000 bytes; the other 96 were never read


def test_chunked_within_the_limit_reaches_the_app_with_its_length(settings):
    settings.BODY_MAX_BYTES = 1000
    inner = EchoApp()
    scope = http_scope("/v1/notifications", [(b"transfer-encoding", b"chunked")])
    status, body, _ = asyncio.run(exchange(BodyLimitMiddleware(inner), scope, [b"x" * 300] * 3))
    assert status == 200 and json.loads(body) == {"length": "900", "got": 900}


def test_the_create_route_takes_a_reference_image_other_routes_small_bodies(settings):
    settings.BODY_MAX_BYTES, settings.UPLOAD_BODY_MAX_BYTES = 1000, 5000
    app = BodyLimitMiddleware(EchoApp())
    sized = [(b"content-length", b"3000")]
    assert asyncio.run(exchange(app, http_scope("/v1/videos", sized), [b"x" * 3000]))[0] == 200
    assert asyncio.run(exchange(app, http_scope("/v1/models", sized), [b"x" * 3000]))[0] == 413
    big = [(b"content-length", b"6000")]
    assert asyncio.run(exchange(app, http_scope("/v1/videos", big), [b"x" * 6000]))[0] == 413


def test_unparsable_content_length_is_refused(settings):
    scope = http_scope("/v1/videos", [(b"content-length", b"12abc")])
    assert asyncio.run(exchange(BodyLimitMiddleware(EchoApp()), scope, [b"x"]))[0] == 413


def raw_http(port: int, head: bytes, body_chunks: list[bytes], pause: float = 0.0) -> tuple[bytes, int]:
    """Speak HTTP/1.1 by hand (chunked uploads, lying lengths); returns (the response, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        response = b""
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except OSError:
                break  # the server closed the connection: it will read no more
            try:
                response += sock.recv(65536)
                if response:
                    break
            except TimeoutError:
                pass
            time.sleep(pause)
        sock.settimeout(10)
        while True:  # the server closes the connection after these answers
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            response += data
    return response, sent


@pytest.mark.e2e
def test_the_web_role_refuses_big_unauthenticated_uploads_early(platform_factory):
    plat = platform_factory(workers=False, UPLOAD_BODY_MAX_BYTES="200000")
    port = plat.port
    sized = b"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    # 1.5 GB declared, nothing sent: 413 at once.
    response, _ = raw_http(port, sized + b"Content-Length: 1500000000\r\n\r\n", [b""])
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b'"code": "body_too_large"' in response
    # Chunked, 64 KiB at a time, up to 1.5 GB: cut off right after the limit.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    head = sized + b"Transfer-Encoding: chunked\r\n\r\n"
    response, sent = raw_http(port, head, [chunk] * (1_500_000_000 // 0x10000), pause=0.001)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 2_000_000, sent  # the rest of the 1.5 GB was never read
    # And a normal request still works on the same server (an honest 401 for a missing key).
    response, _ = raw_http(port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", [b""])
    assert response.startswith(b"HTTP/1.1 401"), response[:200]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_web_role_drops_header_names_with_underscores(platform_factory):
    """`Idempotency_Key` and `Idempotency-Key` are one WSGI variable but two raw headers: the event loop's create
    ignored one that Django's replayed. The web role `make run` starts drops such names at its entrance."""
    import httpx

    from jobs.accounts import api_key_create

    user, _ = ensure_user(username="underscore-user", tier="paid")
    plat = platform_factory(workers=False)
    body = {"prompt": "a lighthouse at dusk", "size": "128x128"}
    with httpx.Client(base_url=plat.base_url, timeout=20) as client:
        client.headers["Authorization"] = f"Bearer {api_key_create(user_id=user.pk)}"
        underscore = {"Idempotency_Key": "same-key"}
        made = [
            client.post("/v1/videos", json=body, headers=underscore),  # JSON: the event loop's create
            client.post("/v1/videos", data=body, headers=underscore),  # a form: Django's
            client.post("/v1/videos", data=body, headers=underscore),
        ]
        keyed = [client.post("/v1/videos", data=body, headers={"Idempotency-Key": "same-key"}) for _ in range(2)]
    assert [r.status_code for r in made + keyed] == [201, 201, 201, 201, 200], [r.text for r in made + keyed]
    assert len({r.json()["id"] for r in made}) == 3  # no key, three videos, whichever door took each
    assert keyed[0].json()["id"] == keyed[1].json()["id"]  # the real header still replays


# --- conditional reads ----------------------------------------------------------------------------------


def test_status_reads_answer_304_until_the_video_changes(api):
    vid = api.post("/v1/videos", {"prompt": "a quiet harbour"}, format="json").json()["id"]
    first = api.get(f"/v1/videos/{vid}")
    etag = first["ETag"]
    assert first.status_code == 200 and etag
    again = api.get(f"/v1/videos/{vid}", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    services.job_cancel(job_id=Job.objects.get(public_id=vid).pk, actor="test")
    changed = api.get(f"/v1/videos/{vid}", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["status"] == "cancelled" and changed["ETag"] != etag


def test_a_304_keeps_the_rate_limit_and_polling_headers(api):
    vid = api.post("/v1/videos", {"prompt": "a quiet harbour"}, format="json").json()["id"]
    first = api.get(f"/v1/videos/{vid}")
    again = api.get(f"/v1/videos/{vid}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert int(again["x-ratelimit-remaining-requests"]) == int(first["x-ratelimit-remaining-requests"]) - 1
    assert again["openai-poll-after-ms"] == first["openai-poll-after-ms"]


def test_list_pages_answer_304_too(api):
    api.post("/v1/videos", {"prompt": "one"}, format="json")
    page = api.get("/v1/videos")
    assert api.get("/v1/videos", HTTP_IF_NONE_MATCH=page["ETag"]).status_code == 304
    api.post("/v1/videos", {"prompt": "two"}, format="json")
    assert api.get("/v1/videos", HTTP_IF_NONE_MATCH=page["ETag"]).status_code == 200


def test_a_status_read_is_one_indexed_query(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    api.get(f"/v1/videos/{vid}")
    with CaptureQueriesContext(connection) as queries:
        assert api.get(f"/v1/videos/{vid}").status_code == 200
    assert len(queries) == 1, [q["sql"] for q in queries]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + queries[0]["sql"])
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "Index Scan" in plan and "Seq Scan" not in plan, plan


def test_an_old_history_is_listed_through_the_users_index_whatever_others_wrote_since(api, user, make_user):
    """A user whose videos are all older than 20,000 of someone else's: the page must not walk the primary key
    past the newer rows (the planner's choice for `user_id = X ORDER BY id` when the user owns a large share)."""
    other = make_user("prolific")
    fill = (
        "INSERT INTO jobs_job (public_id, user_id, state, model, prompt, seconds, width, height, seed, "
        "reference_key, request_hash, attempt, runner_id, progress, video_key, thumbnail_key, error_code, "
        "error_message, created_at, stage_sends, cost, credits, queue, tier) "
        "SELECT 'video_' || lpad(to_hex(%s + i), 24, '0'), %s, 'succeeded', 'wan-tiny', 'p', 4, 128, 128, 1, "
        "'', '', 1, '', 100, '', '', '', '', now(), 1, 1.0, 1, '', 'free' FROM generate_series(1, %s) AS i"
    )
    with connection.cursor() as cursor:
        cursor.execute(fill, [0, user.pk, 5_000])
        cursor.execute(fill, [5_000, other.pk, 20_000])
        cursor.execute("ANALYZE jobs_job")
    first = api.get("/v1/videos?limit=20").json()
    assert len(first["data"]) == 20 and first["has_more"]
    oldest = Job.objects.filter(user=user).order_by("pk").values_list("public_id", flat=True)[100]
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/v1/videos?limit=20").status_code == 200
        assert api.get(f"/v1/videos?limit=20&after={first['last_id']}").status_code == 200
        assert api.get(f"/v1/videos?limit=20&after={oldest}").json()["data"]  # near the table's start
        assert api.get("/v1/videos?limit=20&order=asc").status_code == 200
        assert api.get(f"/v1/videos?limit=20&order=asc&after={oldest}").status_code == 200
    pages = [q["sql"] for q in queries if "ORDER BY" in q["sql"]]
    assert len(pages) == 5
    with connection.cursor() as cursor:
        for sql in pages:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0][0]["Plan"]
            text = json.dumps(plan)
            assert "job_user_id_idx" in text and "jobs_job_pkey" not in text, text
            assert '"Rows Removed by Filter"' not in text or '"Rows Removed by Filter": 0' in text, text


# --- bearer keys are remembered per process -------------------------------------------------------------


def test_a_known_key_costs_no_query_and_revocation_is_seen_within_the_ttl(api, api_key, settings, monkeypatch):
    settings.API_KEY_CACHE_SECONDS = 5.0
    auth.forget_keys()
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    assert api.get("/v1/models").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/v1/models").status_code == 200
    assert not [q for q in queries if "jobs_apikey" in q["sql"]]
    ApiKey.objects.update(revoked_at=timezone.now())
    now[0] += 4.9
    assert api.get("/v1/models").status_code == 200  # still remembered
    now[0] += 0.2
    resp = api.get("/v1/models")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"


def test_with_no_ttl_every_request_checks_its_key(api, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    auth.forget_keys()
    assert api.get("/v1/models").status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())
    assert api.get("/v1/models").status_code == 401


def test_unknown_keys_are_remembered_as_unknown_too(db, settings):
    from rest_framework.test import APIClient

    settings.API_KEY_CACHE_SECONDS = 5.0
    auth.forget_keys()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer vg-not-a-key")
    assert client.get("/v1/models").status_code == 401
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/v1/models").status_code == 401
    assert len(queries) == 0


def _as_if_another_process_remembered(key_hash: str, entry) -> None:
    """The change below ran in this process, which forgot the key at once; put its answer back, as a process
    that did not make the change would still hold it."""
    auth._known[key_hash] = entry


def test_a_revoked_key_stops_at_the_next_request_in_every_process(
    api, user, settings, django_capture_on_commit_callbacks
):
    settings.API_KEY_CACHE_SECONDS = 600.0
    auth.forget_keys()
    assert api.get("/v1/models").status_code == 200
    ((key_hash, entry),) = auth._known.items()
    key = ApiKey.objects.get(user=user)
    key.revoked_at = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        key.save()
    assert key_hash not in auth._known  # the process that revoked it forgot it
    _as_if_another_process_remembered(key_hash, entry)
    resp = api.get("/v1/models")  # the marker comes back in the rate limiter's round trip
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"


def test_a_tier_change_is_seen_at_the_next_request(api, user, settings, django_capture_on_commit_callbacks):
    settings.API_KEY_CACHE_SECONDS = 600.0
    auth.forget_keys()
    free = api.get("/v1/models")
    assert free.headers["x-ratelimit-limit-requests"] == str(int(settings.VIDEOGEN_TIERS["free"]["RATE_PER_MINUTE"]))
    ((key_hash, entry),) = auth._known.items()
    with django_capture_on_commit_callbacks(execute=True):
        ensure_user(username=user.username, tier="paid")
    _as_if_another_process_remembered(key_hash, entry)
    paid = api.get("/v1/models")
    assert paid.headers["x-ratelimit-limit-requests"] == str(int(settings.VIDEOGEN_TIERS["paid"]["RATE_PER_MINUTE"]))


def test_unrelated_saves_leave_remembered_keys_alone(api, user, settings, django_capture_on_commit_callbacks):
    """A login (last_login), the credit counters and new keys change no key's answer: nothing is forgotten."""
    from jobs.accounts import api_key_create

    settings.API_KEY_CACHE_SECONDS = 600.0
    auth.forget_keys()
    assert api.get("/v1/models").status_code == 200
    remembered = dict(auth._known)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])
        account = user.account
        account.credit_balance += 5
        account.save(update_fields=["credit_balance"])
        api_key_create(user_id=user.pk)
    assert callbacks == [] and auth._known == remembered


# --- the hot tables --------------------------------------------------------------------------------------


def index_columns(table: str) -> dict[str, tuple[tuple[str, ...], str | None, bool]]:
    """name -> (key columns, partial predicate, unique) for every index of a table."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname, array_agg(a.attname ORDER BY k.ord), pg_get_expr(x.indpred, x.indrelid), x.indisunique
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
            JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            WHERE x.indrelid = %s::regclass
            GROUP BY i.relname, x.indpred, x.indrelid, x.indisunique
            """,
            [table],
        )
        return {name: (tuple(cols), pred, unique) for name, cols, pred, unique in cursor.fetchall()}


@pytest.mark.parametrize("table", ["jobs_job", "jobs_creditentry", "jobs_jobevent", "jobs_account", "django_q_ormq"])
def test_no_index_of_a_hot_table_is_redundant(table):
    """Every submission writes these tables: an index that another one's prefix already provides is pure cost."""
    indexes = index_columns(table)
    assert not [name for name in indexes if name.endswith("_like")], indexes
    for name, (cols, pred, unique) in indexes.items():
        for other, (other_cols, other_pred, _) in indexes.items():
            covered = other != name and other_cols[: len(cols)] == cols and other_pred == pred
            assert not (covered and not unique), f"{name} {cols} is a prefix of {other} {other_cols}"


def test_heartbeats_are_hot_updates(make_job):
    job = make_job("running", attempt=1, runner_id="r1")
    services.runner_heartbeat(name="r1", slots=1, model_names=["wan-tiny"])

    def hot_and_all(table: str) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass), "
                "pg_stat_get_xact_tuples_updated(%s::regclass)",
                [table, table],
            )
            return cursor.fetchone()

    tables = ("jobs_job", "jobs_runner")
    before = [hot_and_all(t) for t in tables]
    for step in range(5):
        assert services.job_heartbeat(job_id=job.pk, attempt=1, progress=10 * step)
        services.runner_heartbeat(name="r1", slots=1, model_names=["wan-tiny"])
    after = [hot_and_all(t) for t in tables]
    for (hot0, all0), (hot1, all1) in zip(before, after, strict=True):
        assert all1 - all0 == 5 and hot1 - hot0 == 5, (before, after)


def test_a_submission_updates_its_account_in_place(api):
    api.post("/v1/videos", {"prompt": "warm"}, format="json")
    with connection.cursor() as cursor:
        sql = "SELECT pg_stat_get_xact_tuples_hot_updated('jobs_account'::regclass)"
        cursor.execute(sql)
        (before,) = cursor.fetchone()
        for i in range(3):
            assert api.post("/v1/videos", {"prompt": f"p{i}"}, format="json").status_code == 201
        cursor.execute(sql)
        (after,) = cursor.fetchone()
    assert after - before == 3


def test_the_broker_poll_is_served_by_an_index():
    from django_q.models import OrmQ

    poll = OrmQ.objects.filter(key="cpu", lock__lt=timezone.now())[:1]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = poll.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "ormq_key_lock_idx" in plan, plan


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_web_roles_pool_survives_a_postgres_restart(platform_factory):
    """Every server connection of the web role (both pools) is terminated (what a restart or failover does to
    clients): the pooled connections it killed are replaced on checkout, and no request fails."""
    import httpx

    from jobs.accounts import api_key_create, ensure_user

    user, _ = ensure_user(username="restart-user", tier="paid")
    plat = platform_factory(workers=False, API_KEY_CACHE_SECONDS="0")
    headers = {"Authorization": f"Bearer {api_key_create(user_id=user.pk)}"}
    with httpx.Client(base_url=plat.base_url, headers=headers, timeout=10) as client:
        video = client.post("/v1/videos", json={"prompt": "a restart", "size": "128x128"}).json()["id"]

        def statuses(n: int) -> list[int]:
            # Django's pool (the list) and the event loop's (the status read, jobs.api.hot) in turn.
            paths = ("/v1/videos", f"/v1/videos/{video}")
            return [client.get(paths[i % 2]).status_code for i in range(n)]

        assert set(statuses(40)) == {200}  # fills both processes' pools

        def terminate() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'videogen-web%%'"
                )
                return cursor.fetchone()[0]

        assert terminate() >= 2
        time.sleep(0.5)  # let the terminations land (the server closes each socket)
        assert statuses(60) == [200] * 60
        assert terminate() >= 1  # new connections replaced the dead ones
        time.sleep(0.5)
        assert statuses(20) == [200] * 20


def _raw_connection():
    import psycopg

    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the web role pools Postgres connections")
def test_the_pool_check_sends_nothing_on_a_healthy_connection(tmp_path):
    """The check polls the socket: a healthy connection costs no round trip (libpq traces every message)."""
    from videogen.pgpool.base import check_pooled

    conn = _raw_connection()
    trace = tmp_path / "trace"
    try:
        with trace.open("w") as f:
            conn.pgconn.trace(f.fileno())
            check_pooled(conn)
            conn.pgconn.untrace()
        assert trace.read_text() == ""
        with trace.open("w") as f:  # the trace itself works: a query writes to it
            conn.pgconn.trace(f.fileno())
            conn.execute("SELECT 1")
            conn.pgconn.untrace()
        assert "Query" in trace.read_text()
    finally:
        conn.close()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the web role pools Postgres connections")
def test_the_pool_check_fails_a_connection_the_server_closed():
    import psycopg

    from videogen.pgpool.base import check_pooled

    conn = _raw_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server's FATAL message reaches the socket
            try:
                check_pooled(conn)
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("a terminated connection passed the check")
        with pytest.raises(ConnectionError):
            check_pooled(conn)  # and once broken, without touching the socket
    finally:
        conn.close()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_every_web_process_stops_a_revoked_key_at_once(platform_factory):
    """Both web processes remember the key for ten minutes; revoking it (here, as the admin would) is seen by
    each at its next request."""
    import httpx

    from jobs.accounts import api_key_create, ensure_user

    user, _ = ensure_user(username="revoke-user", tier="paid")
    plat = platform_factory(workers=False, API_KEY_CACHE_SECONDS="600")
    # A new connection for every request, so that both processes serve some.
    headers = {"Authorization": f"Bearer {api_key_create(user_id=user.pk)}", "Connection": "close"}
    with httpx.Client(base_url=plat.base_url, headers=headers, timeout=10) as client:
        assert {client.get("/v1/models").status_code for _ in range(40)} == {200}  # both processes remember it
        key = ApiKey.objects.get(user=user)
        key.revoked_at = timezone.now()
        key.save()
        assert {client.get("/v1/models").status_code for _ in range(40)} == {401}
