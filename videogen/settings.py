"""One settings module, driven by environment variables.

Defaults run the embedded profile (SQLite, ORM broker, in-memory channel layer, local files).
Setting DATABASE_URL / REDIS_URL / STORAGE_* switches to the production profile; nothing else differs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from videogen.env import env_bool, env_choice, env_float, env_floats, env_int, env_list, env_str, var_dir

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()  # made by the entry points (videogen.boot): importing settings writes nothing

DEVELOPMENT_SECRET_KEY = "dev-insecure-change-me"
SECRET_KEY = env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the docs page's Redoc, served from here (no CDN)
    "channels",
    "django_q",
    "jobs",
    "moderation",
    "notifications",
    "gpu_runner",
    "axes",  # login throttling (see auth below)
]

MIDDLEWARE = [
    # X-Request-ID bound for the logs and kept on the jobs a request makes (videogen.requestid).
    "videogen.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # ETag on every GET response, and 304 Not Modified (rate-limit headers kept) when If-None-Match matches.
    "videogen.conditional.ConditionalGetMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers a locked-out login (site and admin) with 429 and the lockout page; last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "videogen.urls"
ASGI_APPLICATION = "videogen.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- database -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL and (SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 32):
    # django-q2's task payloads are pickles signed with this key: whoever knows it and can write the broker
    # table runs code on the workers. It also signs sessions and password resets.
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random secret (32+ characters) in the production profile "
        "(DATABASE_URL is set), the same on every host: "
        "e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
# Which process this is: videogen.asgi sets "web"; management commands (dispatcher, qclusters) default to "worker".
# Never run a qcluster as "web": its forked children would share the parent's pooled sockets.
ROLE = env_str("VIDEOGEN_ROLE", "worker")
# The web role's serving (videogen.asgi, `manage.py web`): processes on one socket, and request threads in each.
# One process per core: status reads run on each process's event loop (jobs.api.hot), and more processes than
# cores only lengthened the tail (docs/decisions/serving.md).
WEB_WORKERS = env_int("WEB_WORKERS", os.cpu_count() or 1)
WEB_THREADS = env_int("WEB_THREADS", 2)
# Status reads by a bearer key and plain submissions are served on each process's event loop (jobs.api.hot), with
# a pool of its own.
WEB_HOT_ROUTES = env_bool("WEB_HOT_ROUTES", True)
WEB_ASYNC_DB_POOL = env_int("WEB_ASYNC_DB_POOL", 4)
WEB_ASYNC_DB_TIMEOUT = env_float("WEB_ASYNC_DB_TIMEOUT", 10.0)  # waiting for a connection: then 503
# Its statements as prepared statements of their session (off behind a PgBouncer in transaction mode).
WEB_ASYNC_DB_PREPARE = env_bool("WEB_ASYNC_DB_PREPARE", True)
if DATABASE_URL and ROLE == "web":
    # Each request runs in its own context (a2wsgi copies one per request), so Django's "persistent"
    # connections would never be reused. A per-process psycopg pool hands one back at each request's end, and
    # checks it when handing it out again (videogen.pgpool: without a round trip), so connections a Postgres
    # restart killed are replaced, not failed.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, engine="videogen.pgpool")}
    _pool_max = env_int("DB_POOL_MAX_SIZE", WEB_THREADS)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, _pool_max),
        "max_size": _pool_max,
        "timeout": 10,
    }
elif DATABASE_URL:
    # Long-lived single-threaded loops: persistent connections, or django-q2's broker opens one per call
    # (docs/decisions/database.md). Health checks survive a restarted Postgres.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=None, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "videogen.sqlite3")),
            # IMMEDIATE: a read lock can't be upgraded under WAL; without it 36-69% of writes fail.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
if DATABASE_URL:
    # Which role a connection belongs to shows in pg_stat_activity (and lets an operator or a test find it).
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"videogen-{ROLE}"
DATABASES["default"].setdefault("TEST", {})
DATABASES["default"]["TEST"]["NAME"] = env_str("TEST_DATABASE_NAME") or None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer and cache ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    # Each web process's pool to Redis: every socket's join and leave of its user's group borrows a connection,
    # so a wave of a thousand (a deploy, a network blip) needs many at once; redis-py's default (100) refuses them.
    # And its socket timeout must outlast channels-redis's blocking receive (BZPOPMIN, 5 s): redis-py 8 defaults it
    # to 5 s too, so a busy process lost the race and the socket's consumer died with "Timeout reading".
    _channel_host = {
        "address": REDIS_URL,
        "max_connections": env_int("REDIS_CHANNEL_MAX_CONNECTIONS", 1000),
        "socket_timeout": 30,
    }
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_channel_host]}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- storage (django-storages) --------------------------------------------------------------------
MEDIA_ROOT = env_str("MEDIA_ROOT", str(VAR_DIR / "media"))
STORAGE_BUCKET = env_str("STORAGE_BUCKET")
if STORAGE_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": STORAGE_BUCKET,
            "endpoint_url": env_str("STORAGE_ENDPOINT_URL") or None,
            "access_key": env_str("STORAGE_ACCESS_KEY") or None,
            "secret_key": env_str("STORAGE_SECRET_KEY") or None,
            "region_name": env_str("STORAGE_REGION") or None,
            "default_acl": None,
            "file_overwrite": True,
            "signature_version": "s3v4",  # presigned content URLs; SigV2 is refused by newer regions
            # A CDN in front of the bucket: content URLs point at it, signed with the CloudFront key when one is set.
            "custom_domain": env_str("STORAGE_CUSTOM_DOMAIN") or None,
            "url_protocol": env_str("STORAGE_URL_PROTOCOL", "https:"),
            "cloudfront_key_id": env_str("STORAGE_CLOUDFRONT_KEY_ID") or None,
            "cloudfront_key": env_str("STORAGE_CLOUDFRONT_KEY") or None,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    }
# Content downloads redirect to presigned object URLs valid this long (object storage only).
STORAGE_URL_SECONDS = env_int("STORAGE_URL_SECONDS", 300)
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- auth and i18n --------------------------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Password logins (the site's /accounts/login/ and the admin's) are throttled by django-axes: after
# LOGIN_FAILURE_LIMIT wrong passwords in a row for one username from one address, that pair is refused (429,
# even with the right password) until LOGIN_COOLOFF_SECONDS pass without another try; other users and other
# addresses are unaffected. Attempts live in the database, so every web process sees them. API keys are not
# passwords: the API's own rate limiter covers them.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("LOGIN_COOLOFF_SECONDS", 900) / 3600  # hours, as django-axes counts them
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # no row per successful login: only failures are kept, until their cool-off
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The demo user (`make run`: demo/demo, a superuser): only in the embedded profile unless DEMO_USER=true.
DEMO_USER = env_bool("DEMO_USER", not DATABASE_URL)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# Behind TLS (HTTPS=true): cookies only over HTTPS, HSTS, and http:// redirected. TRUST_X_FORWARDED_PROTO=true
# when a proxy terminates TLS and sets X-Forwarded-Proto (only then: a client could send it itself).
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes and scrapes come over plain HTTP
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- API ------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "jobs.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The OpenAPI description (/v1/openapi.json) and its docs page (/v1/docs), readable without a key.
SPECTACULAR_SETTINGS = {
    "TITLE": "videogen API",
    "DESCRIPTION": "OpenAI Videos-compatible video generation (the official `openai` SDK is a client), plus "
    "notifications, credits and models. Errors use the OpenAI envelope.",
    "VERSION": "1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "REDOC_DIST": "SIDECAR",
    # Each object's `object` field is a constant: one named enum per constant.
    "ENUM_NAME_OVERRIDES": {
        f"{name.title().replace('.', '').replace('_', '')}ObjectEnum": [value]
        for name, value in (
            ("video", "video"),
            ("list", "list"),
            ("video.deleted", "video.deleted"),
            ("model", "model"),
            ("notification", "notification"),
            ("credit_entry", "credit_entry"),
            ("credits", "credits"),
            ("webhook_endpoint", "webhook_endpoint"),
            ("webhook_endpoint.deleted", "webhook_endpoint.deleted"),
            ("webhook_endpoint.test", "webhook_endpoint.test"),
            ("webhook_delivery", "webhook_delivery"),
            ("notification_preferences", "notification_preferences"),
            ("notification_read_state", "notification_read_state"),
        )
    }
    | {
        "VideoStatusEnum": ["queued", "in_progress", "completed", "failed", "cancelled"],
        "WebhookEndpointStatusEnum": ["enabled", "disabled"],
        "WebhookDeliveryStatusEnum": ["pending", "delivered", "dead"],
    },
}
# Each web process remembers a bearer key's user this long. A revoked key, a deactivated user or a changed tier
# is seen at the next rate-limited request (a marker in Redis, jobs.api.auth); this is the bound elsewhere.
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 60.0)
# Bodies are refused (413) before they are read once past their route's limit (videogen.bodylimit): the create
# endpoint takes a reference image (multipart, or base64 in JSON: 4/3 of its size), every other route small JSON.
_REFERENCE_MAX_BYTES = env_int("REFERENCE_MAX_BYTES", 10 * 1024 * 1024)
UPLOAD_BODY_MAX_BYTES = env_int("UPLOAD_BODY_MAX_BYTES", _REFERENCE_MAX_BYTES * 4 // 3 + 64 * 1024)
BODY_MAX_BYTES = env_int("BODY_MAX_BYTES", 256 * 1024)

# Largest body Django itself parses in memory (a JSON body with a data-URL reference included).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", UPLOAD_BODY_MAX_BYTES)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# --- the videogen domain --------------------------------------------------------------------------
VIDEOGEN = {
    "MODELS_DIR": env_str("MODELS_DIR", str(VAR_DIR / "models")),
    "DEFAULT_MODEL": env_str("DEFAULT_MODEL", "wan-tiny"),
    "PROMPT_MAX_CHARS": env_int("PROMPT_MAX_CHARS", 4000),
    "REFERENCE_MAX_BYTES": _REFERENCE_MAX_BYTES,
    "MAX_ATTEMPTS": env_int("JOB_MAX_ATTEMPTS", 3),
    "RETRY_BACKOFF_SECONDS": env_float("JOB_RETRY_BACKOFF_SECONDS", 5.0),
    "LEASE_SECONDS": env_float("JOB_LEASE_SECONDS", 30.0),
    "DISPATCH_TIMEOUT_SECONDS": env_float("JOB_DISPATCH_TIMEOUT_SECONDS", 60.0),
    "HEARTBEAT_SECONDS": env_float("JOB_HEARTBEAT_SECONDS", 2.0),
    # A running generation with no step and no phase for this long is hung: its attempt is given back and the
    # worker process replaced (gpu_runner.tasks.LeaseKeeper). Above the longest step, model load or VAE decode; 0: off.
    "GENERATION_STALL_SECONDS": env_float("GENERATION_STALL_SECONDS", 600.0),
    # A running job is *stuck* (the admin's stuck-job view, videogen_jobs_stuck) past JOB_STUCK_FACTOR times its
    # shape's estimated p99 run time, and never before JOB_STUCK_MIN_SECONDS (jobs.stuck).
    "STUCK_FACTOR": env_float("JOB_STUCK_FACTOR", 1.5),
    "STUCK_MIN_SECONDS": env_float("JOB_STUCK_MIN_SECONDS", 60.0),
    # The operations page's samples (jobs.ops): how often the dispatcher takes one, and how long they are kept.
    "OPS_SAMPLE_SECONDS": env_float("OPS_SAMPLE_SECONDS", 60.0),
    "OPS_SAMPLE_KEEP_HOURS": env_float("OPS_SAMPLE_KEEP_HOURS", 48.0),
    "RUNNER_HEARTBEAT_SECONDS": env_float("RUNNER_HEARTBEAT_SECONDS", 2.0),
    "RUNNER_TTL_SECONDS": env_float("RUNNER_TTL_SECONDS", 10.0),
    "DISPATCH_INTERVAL_SECONDS": env_float("DISPATCH_INTERVAL_SECONDS", 0.2),
    # A moderation stage not done after this long is sent again (lost or failed cpu message).
    "STAGE_RESEND_SECONDS": env_float("STAGE_RESEND_SECONDS", 120.0),
    "STAGE_MAX_SENDS": env_int("STAGE_MAX_SENDS", 5),
    # A job dispatched this many times without any runner claiming it fails with `no_runner`.
    "MAX_DISPATCHES": env_int("JOB_MAX_DISPATCHES", 5),
    # Retention of stored files after a job ends (jobs.services.retention): a completed video and its
    # thumbnail; a rejected job's clip (for moderators and appeals); a failed or cancelled job's partial output.
    # A job's reference image and its attempts' leftovers go with the rest. The dispatcher sweeps every
    # RETENTION_SWEEP_SECONDS (0: never).
    "VIDEO_RETENTION_SECONDS": env_int("VIDEO_RETENTION_SECONDS", 7 * 24 * 3600),
    "REJECTED_RETENTION_SECONDS": env_int("REJECTED_RETENTION_SECONDS", 7 * 24 * 3600),
    "DISCARDED_RETENTION_SECONDS": env_int("DISCARDED_RETENTION_SECONDS", 3600),
    # A finished job's prompt, and every copy of it (notifications, webhook bodies, emails, the text of its
    # moderation records), is erased this long after it ended; a job whose appeal is open keeps it until decided.
    "PROMPT_RETENTION_SECONDS": env_int("PROMPT_RETENTION_SECONDS", 30 * 24 * 3600),
    # Rows that grow with every job are deleted after these (the credit ledger, jobs and moderation decisions
    # stay): the audit trail of state changes; the notification log with its webhook deliveries, their attempts
    # and its emails (longer than any delivery's retries); django-q2's task results.
    "EVENT_RETENTION_SECONDS": env_int("EVENT_RETENTION_SECONDS", 90 * 24 * 3600),
    "NOTIFICATION_RETENTION_SECONDS": env_int("NOTIFICATION_RETENTION_SECONDS", 30 * 24 * 3600),
    "TASK_RESULT_RETENTION_SECONDS": env_int("TASK_RESULT_RETENTION_SECONDS", 7 * 24 * 3600),
    "RETENTION_SWEEP_SECONDS": env_float("RETENTION_SWEEP_SECONDS", 60.0),
    "POLL_AFTER_MS": env_int("POLL_AFTER_MS", 500),
    "NOTIFY_POLL_SECONDS": env_float("NOTIFY_POLL_SECONDS", 0.2),
    "NOTIFY_RESYNC_SECONDS": env_float("NOTIFY_RESYNC_SECONDS", 15.0),
    # A (re)connecting socket gets at most this many notifications, the newest (a gap message says so).
    "NOTIFY_REPLAY_MAX": env_int("NOTIFY_REPLAY_MAX", 100),
    "WS_MAX_SOCKETS_PER_USER": env_int("WS_MAX_SOCKETS_PER_USER", 20),
    # An event stream (GET /v1/events) sends a comment this often, so proxies and clients keep it open.
    "SSE_KEEPALIVE_SECONDS": env_float("SSE_KEEPALIVE_SECONDS", 15.0),
    # Cost model: a new (model, size, seconds) shape is priced by this prior until runs are observed.
    "COST_PRIOR_BASE_SECONDS": env_float("COST_PRIOR_BASE_SECONDS", 0.5),
    "COST_PRIOR_SECONDS_PER_MEGAPIXEL_FRAME": env_float("COST_PRIOR_SECONDS_PER_MEGAPIXEL_FRAME", 0.5),
    "COST_LEARNING_RATE": env_float("COST_LEARNING_RATE", 0.2),
    # How often the dispatcher publishes queue positions, ETAs and per-tier waits (admission reads them).
    "QUEUE_PUBLISH_SECONDS": env_float("QUEUE_PUBLISH_SECONDS", 1.0),
    # Retry-After sent with the concurrency and queue caps (a slot frees when one of the user's jobs ends).
    "CAP_RETRY_AFTER_SECONDS": env_int("CAP_RETRY_AFTER_SECONDS", 10),
    # An SDK retry of a create sent without an Idempotency-Key returns the video its first try made within
    # this time (the SDK's own timeout is 10 minutes); 0: every try creates.
    "CREATE_RETRY_WINDOW_SECONDS": env_int("CREATE_RETRY_WINDOW_SECONDS", 900),
}

# --- email (notifications.emails) -------------------------------------------------------------------------
# Printed to the role's output unless an SMTP host is set.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "videogen <videogen@localhost>")
EMAILS = {
    # Where the links in emails point (the page, as users reach it).
    "PUBLIC_BASE_URL": env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
    # Event types emailed unless the user turned them off (notification_preferences).
    "DEFAULT_EVENTS": env_list("EMAIL_DEFAULT_EVENTS", "video.completed,video.failed,webhook_endpoint.disabled"),
    "RETRY_SCHEDULE": env_floats("EMAIL_RETRY_SCHEDULE", "60,300,900,3600,10800"),
}

# --- webhooks (notifications.webhooks) ------------------------------------------------------------------
WEBHOOKS = {
    # Receivers on private, loopback or link-local addresses are refused unless inside one of these CIDRs
    # (e.g. "10.0.0.0/8" for self-hosted receivers); empty: public addresses only.
    "ALLOWED_NETWORKS": env_list("WEBHOOK_ALLOWED_NETWORKS", ""),
    # Seconds before each retry, each lengthened by a random 0-20% (never shortened); after the last the delivery
    # is dead. The default spans 24.7 to 29.7 hours (notifications.webhooks.retry_span).
    "RETRY_SCHEDULE": env_floats("WEBHOOK_RETRY_SCHEDULE", "5,30,120,600,1800,3600,7200,14400,28800,32400"),
    # Wall-clock bound of a whole attempt (lookup, connect, headers, body); it must end well within the 60 s
    # claim of an attempt (notifications.webhooks.IN_FLIGHT_SECONDS), or the sweep would send it again meanwhile.
    "ATTEMPT_DEADLINE_SECONDS": env_float("WEBHOOK_ATTEMPT_DEADLINE_SECONDS", 10.0),
    "CONNECT_TIMEOUT_SECONDS": env_float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3.0),
    # Attempts of one user's deliveries on the wire at once (the delivery workers are shared by every user); more
    # wait for a free place.
    "MAX_IN_FLIGHT_PER_USER": env_int("WEBHOOK_MAX_IN_FLIGHT_PER_USER", 2),
    # POST /v1/webhook_endpoints/{id}/test: how many one user may have running, and how long the request waits
    # for the delivery worker's answer (then 504: the attempt's outcome shows in the endpoint's deliveries).
    "MAX_TESTS_PER_USER": env_int("WEBHOOK_MAX_TESTS_PER_USER", 1),
    "TEST_WAIT_SECONDS": env_float("WEBHOOK_TEST_WAIT_SECONDS", 15.0),
    "RESPONSE_EXCERPT_BYTES": env_int("WEBHOOK_RESPONSE_EXCERPT_BYTES", 2048),
    # After a rotation the old secret still signs (a second signature) for this long.
    "SECRET_GRACE_SECONDS": env_int("WEBHOOK_SECRET_GRACE_SECONDS", 24 * 3600),
    # An endpoint failing every delivery for this long is disabled (a 410 disables it at once).
    "DISABLE_AFTER_SECONDS": env_int("WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600),
    "MAX_ENDPOINTS_PER_USER": env_int("WEBHOOK_MAX_ENDPOINTS_PER_USER", 10),
}
if not 0 < WEBHOOKS["ATTEMPT_DEADLINE_SECONDS"] <= 40:
    raise ImproperlyConfigured("WEBHOOK_ATTEMPT_DEADLINE_SECONDS must be above 0 and at most 40 (the claim is 60 s)")

# --- tiers: who goes next, and how much each user may ask for ----------------------------------------
# Every field of every tier comes from TIER_<TIER>_<FIELD> (e.g. TIER_FREE_MAX_QUEUED=20). 0 means "no limit"
# for the caps and allowances. Weights share GPU time (GPU-seconds served) between tiers while they all have
# backlog; an idle tier's share goes to the others.
_TIER_FIELDS = (
    "WEIGHT",  # share of GPU time while several tiers have backlog
    "MAX_INFLIGHT",  # unfinished jobs per user (429 concurrency_limit)
    "MAX_QUEUED",  # jobs waiting for a GPU per user (429 queue_limit)
    "DAILY_JOBS",  # submissions per user per UTC day (429 daily_limit)
    "DAILY_CREDITS",  # credits each user may spend per UTC day before drawing on their balance (-1: not metered)
    "WAIT_BOUND_SECONDS",  # estimated wait beyond which new submissions of the tier get 503 capacity_exceeded
    "AGING_SECONDS",  # a job waiting longer than this goes before any other work
    "RATE_PER_MINUTE",  # API requests per user
    "SUBMIT_RATE_PER_MINUTE",  # POST /v1/videos per user
    "WATERMARK",  # 1: a visible "AI-generated" mark on the tier's videos (drawn by local runners), 0: none
)
_TIER_DEFAULTS: dict[str, tuple[float, ...]] = {
    "free": (1, 8, 5, 200, 2000, 900, 1800, 600, 60, 0),
    "paid": (3, 32, 50, 5000, 50000, 3600, 1800, 3000, 600, 0),
    "internal": (6, 0, 0, 0, -1, 0, 600, 0, 0, 0),
}
VIDEOGEN_TIERS: dict[str, dict[str, float]] = {
    tier: {
        field: env_float(f"TIER_{tier.upper()}_{field}", default)
        for field, default in zip(_TIER_FIELDS, defaults, strict=True)
    }
    for tier, defaults in _TIER_DEFAULTS.items()
}

# --- django-q2: cpu workers (default cluster) and gpu runners ("gpu") -----------------------------
GPU_TASK_TIMEOUT = env_int("GPU_TASK_TIMEOUT", 3600)
Q_CLUSTER = {
    "name": "cpu",
    "orm": "default",  # the enqueue commits or rolls back with the transaction that made it
    "broker_class": "jobs.broker.DatabaseClockBroker",  # the ORM broker on the database's clock
    "workers": env_int("CPU_WORKERS", 2),
    "timeout": env_int("CPU_TASK_TIMEOUT", 300),
    # retry must stay far above timeout + queue wait, or a task can run twice.
    "retry": env_int("CPU_TASK_RETRY", 900),
    "max_attempts": 1,
    "ack_failures": True,
    "queue_limit": 4,
    "bulk": 1,
    "poll": env_float("CPU_POLL_SECONDS", 0.1),
    "catch_up": False,
    "save_limit": 1000,
    "label": "Django Q2",
    "ALT_CLUSTERS": {},
}
# The delivery role (`Q_CLUSTER_NAME=delivery manage.py qcluster`): webhook deliveries, webhook tests and emails
# on a queue and workers of their own, so a slow receiver holds a delivery worker, never moderation (cpu) or a web
# request. Its workers mostly wait on the network: more of them than cores.
DELIVERY_QUEUE = "delivery"
Q_CLUSTER["ALT_CLUSTERS"][DELIVERY_QUEUE] = {
    "workers": env_int("DELIVERY_WORKERS", 4),
    "timeout": env_int("DELIVERY_TASK_TIMEOUT", 120),  # a task is one attempt: far above its 40 s deadline at most
    "retry": env_int("DELIVERY_TASK_RETRY", 600),
    "poll": env_float("DELIVERY_POLL_SECONDS", 0.1),
}
# Each gpu cluster (one per GPU) consumes its own queue, so work is addressed to a free runner and a busy
# runner's pusher never holds a job meant for an idle one. `Q_CLUSTER_NAME=gpu` gets a unique
# name per cluster (gpu.<host>.<pid>); any other name starting with "gpu" is used as given.
_GPU_CLUSTER = {
    "workers": env_int("GPU_WORKERS", 1),  # one worker per GPU
    "timeout": GPU_TASK_TIMEOUT,
    "retry": GPU_TASK_TIMEOUT * 2,
    "queue_limit": 1,
    "bulk": 1,
    "poll": env_float("GPU_POLL_SECONDS", 0.05),  # an idle GPU should not wait 200 ms
    # How soon the sentinel replaces a worker that died (the GPU's slot is out until then); default 0.5.
    "guard_cycle": env_float("GPU_GUARD_CYCLE_SECONDS", 0.2),
}
RUNNER_QUEUE = env_str("Q_CLUSTER_NAME")
if RUNNER_QUEUE == "gpu":
    raise ImproperlyConfigured("Q_CLUSTER_NAME=gpu is named per process by the entry point: start it with manage.py")
if RUNNER_QUEUE.startswith("gpu"):
    Q_CLUSTER["ALT_CLUSTERS"][RUNNER_QUEUE] = _GPU_CLUSTER
RUNNER_POOL = env_str("RUNNER_POOL", "default")
# The models this runner loads and offers (comma separated); empty: every model in the registry.
RUNNER_MODELS = env_list("RUNNER_MODELS", "")
RUNNER_VERSION = env_str("RUNNER_VERSION", "")
# What a gpu worker generates with: "diffusers" (the real pipeline), or "simulated" for load and fault runs
# (`make chaos`): a SIMULATED generation that sleeps a lognormal duration (median SIMULATED_P50_SECONDS, 99th
# percentile SIMULATED_P99_SECONDS, times SIMULATED_TIME_FACTOR) through the real runner path and stores a
# tiny placeholder clip; a prompt containing SIMULATED_POISON_MARKER fails every attempt.
GPU_BACKEND = env_str("GPU_BACKEND", "diffusers")
# Remote generation backends (jobs.backends): the TOML file that lists the pools (base URL, credentials, dialect,
# concurrency, models, webhook secret); empty: none. Each pool is driven by `manage.py remote_worker POOL`.
REMOTE_POOLS_FILE = env_str("REMOTE_POOLS_FILE", "")
REMOTE = {
    # How often a remote worker looks for jobs handed to its pool and for due polls.
    "TICK_SECONDS": env_float("REMOTE_TICK_SECONDS", 0.1),
    # The largest result a remote worker downloads.
    "MAX_RESULT_BYTES": env_int("REMOTE_MAX_RESULT_BYTES", 512 * 1024 * 1024),
}
SIMULATED_GENERATION = {
    "P50_SECONDS": env_float("SIMULATED_P50_SECONDS", 30.0),
    "P99_SECONDS": env_float("SIMULATED_P99_SECONDS", 300.0),
    "TIME_FACTOR": env_float("SIMULATED_TIME_FACTOR", 0.02),
    "POISON_MARKER": env_str("SIMULATED_POISON_MARKER", "[simulated-poison]"),
}

# --- observability (videogen.metrics) -----------------------------------------------------------------------
# /metrics: with METRICS_TOKEN set a scrape must send `Authorization: Bearer <token>`; without it only loopback
# clients are served. Every process of a host adds its counters to files in PROMETHEUS_MULTIPROC_DIR (one
# directory per host, shared by its roles; emptied when the whole host restarts, never while roles run).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# prometheus_client reads it from the environment at its import: the entry points set it (videogen.boot).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))

# Logs, with the request id and the job (id, attempt, runner, user, tier) each line is about (videogen.logcontext):
# one JSON object per line (LOG_FORMAT=json, the production profile's default, for a log collector), or a short
# readable line (LOG_FORMAT=plain, the embedded profile's default: a person at a terminal).
LOG_FORMAT = env_choice("LOG_FORMAT", "json" if DATABASE_URL else "plain", ("json", "plain"))
_LOG_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "videogen.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {"()": "videogen.logcontext.ReadableFormatter"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": _LOG_FIELDS + " %(request_id)s %(job_id)s %(attempt)s %(runner)s %(user)s %(tier)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django's own loggers default to INFO and would log every 4xx at WARNING whatever the root level says.
    # httpx logs every request at INFO (webhook deliveries, remote pools): the callers log what matters.
    "loggers": {
        "django": {"level": env_str("LOG_LEVEL", "INFO")},
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
    },
}

# Moderation: extra blocked terms (whole words, comma separated) for the operator_terms category; the written
# policy (a file like moderation/policy.toml); the classifiers the stages run (a stage whose classifier is not
# listed, or fails, holds its job for a moderator: fail closed); where the trained text model is kept between
# processes; the labelled data it is trained on (a directory like moderation/data, or one JSONL file); the languages
# the text check covers (a prompt in another is held for a person; each needs training data, see docs/); how many
# frames of a generated video the output stage classifies (0: the policy's number).
MODERATION_BLOCKED_TERMS = env_list("MODERATION_BLOCKED_TERMS", "")
MODERATION_POLICY_FILE = env_str("MODERATION_POLICY_FILE", str(BASE_DIR / "moderation" / "policy.toml"))
MODERATION_CLASSIFIERS = env_list("MODERATION_CLASSIFIERS", "text,nsfw,faces")
MODERATION_CACHE_DIR = env_str("MODERATION_CACHE_DIR", str(VAR_DIR / "moderation"))
MODERATION_TEXT_DATA = env_str("MODERATION_TEXT_DATA", str(BASE_DIR / "moderation" / "data"))
MODERATION_LANGUAGES = frozenset(env_list("MODERATION_LANGUAGES", "en,es,fr,de,pt,ru,zh,ja,ar,hi"))
if not MODERATION_LANGUAGES or not all(re.fullmatch(r"[a-z]{2,3}", code) for code in MODERATION_LANGUAGES):
    raise ImproperlyConfigured(
        f"MODERATION_LANGUAGES must be ISO 639 codes such as en,es, not {sorted(MODERATION_LANGUAGES)}"
    )
MODERATION_OUTPUT_FRAMES = env_int("MODERATION_OUTPUT_FRAMES", 0)
# Clips the output stage and the review page sample: larger ones are held for a person without being decoded.
MODERATION_CLIP_MAX_FRAMES = env_int("MODERATION_CLIP_MAX_FRAMES", 7200)
MODERATION_CLIP_MAX_PIXELS = env_int("MODERATION_CLIP_MAX_PIXELS", 3840 * 2160)


def _positive_int(name: str, default: int, *, most: int | None = None) -> int:
    value = env_int(name, default)
    if value < 1 or (most is not None and value > most):
        bound = f" at most {most}" if most is not None else ""
        raise ImproperlyConfigured(f"{name} must be a positive integer{bound}, not {value}")
    return value


# Abuse (jobs.services.abuse): a user whose prompts the input stage blocks MODERATION_ABUSE_BLOCKS times within
# MODERATION_ABUSE_WINDOW_SECONDS may not submit for MODERATION_ABUSE_COOLDOWN_SECONDS (429 moderation_cooldown)
# and is flagged to the moderators. At most 100 blocks: each user's recent block times are kept in one small row.
MODERATION_ABUSE_BLOCKS = _positive_int("MODERATION_ABUSE_BLOCKS", 5, most=100)
MODERATION_ABUSE_WINDOW_SECONDS = _positive_int("MODERATION_ABUSE_WINDOW_SECONDS", 3600)
MODERATION_ABUSE_COOLDOWN_SECONDS = _positive_int("MODERATION_ABUSE_COOLDOWN_SECONDS", 900)

# Where the runner finds each model's diffusers directory: "name=path,name=path" (default MODELS_DIR/<name>).
VIDEOGEN_MODEL_PATHS = env_list("MODEL_PATHS", "")
# Each model's version as its videos' content credentials name it: "name=version,..." (default: the weights'
# folder name, which for a Hugging Face snapshot is its commit; for a remote pool, the server's model name).
MODEL_VERSIONS = env_list("MODEL_VERSIONS", "")

# --- provenance (videogen.provenance): every stored clip carries a signed C2PA manifest -------------------------
# The signer: its X.509 certificate chain (PEM, the signing certificate first, then its issuers) and private key,
# read by every gpu runner and remote worker. c2pa refuses a self-signed one; `manage.py c2pa_setup` (run by
# `make run`) makes a local authority (C2PA_LOCAL_CA) and a signer it issues when these files do not exist yet.
_C2PA_DIR = VAR_DIR / "c2pa"
C2PA = {
    "SIGN_CERT": env_str("C2PA_SIGN_CERT", str(_C2PA_DIR / "signer.pem")),
    "SIGN_KEY": env_str("C2PA_SIGN_KEY", str(_C2PA_DIR / "signer.key")),
    "SIGN_ALG": env_str("C2PA_SIGN_ALG", "es256"),  # es256/384/512, ps256/384/512 or ed25519, as the key is
    "LOCAL_CA": env_str("C2PA_LOCAL_CA", str(_C2PA_DIR / "ca.pem")),
}
