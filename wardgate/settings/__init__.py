"""Wardgate settings, read from environment variables.

Defaults run the embedded demo (SQLite, in-process task queue). `WARDGATE_MODE=production`
switches to strict mode, in which demo-only values are refused at start-up.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dj_database_url

from .env import env_bool, env_int, env_list, env_str
from .safety import DEMO_SECRET_KEY, SafetyInputs, refuse_unsafe_production_settings

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("WARDGATE_VAR_DIR", str(BASE_DIR / "var")))

WARDGATE_MODE = env_str("WARDGATE_MODE", "demo").strip().lower()
if WARDGATE_MODE not in {"demo", "production"}:
    raise ValueError(f"WARDGATE_MODE must be 'demo' or 'production', got {WARDGATE_MODE!r}")
PRODUCTION = WARDGATE_MODE == "production"

SECRET_KEY = env_str("WARDGATE_SECRET_KEY", "" if PRODUCTION else DEMO_SECRET_KEY)
DEBUG = env_bool("WARDGATE_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("WARDGATE_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("WARDGATE_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'wardgate.sqlite3'}")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
REDIS_URL = env_str("REDIS_URL", "")


def _derived_demo_key(purpose: str) -> str:
    # Demo-only: derive per-purpose keys from the secret so one variable configures the demo.
    return hashlib.sha256(f"{purpose}:{SECRET_KEY}".encode()).hexdigest()


WARDGATE_FIELD_ENCRYPTION_KEY = env_str(
    "WARDGATE_FIELD_ENCRYPTION_KEY", "" if PRODUCTION else _derived_demo_key("fields")
)
WARDGATE_TOKEN_HMAC_KEY = env_str(
    "WARDGATE_TOKEN_HMAC_KEY", "" if PRODUCTION else _derived_demo_key("tokenize")
)

if PRODUCTION:
    refuse_unsafe_production_settings(
        SafetyInputs(
            debug=DEBUG,
            secret_key=SECRET_KEY,
            database_url=DATABASE_URL,
            broker_url=CELERY_BROKER_URL,
            allowed_hosts=ALLOWED_HOSTS,
            field_encryption_key=WARDGATE_FIELD_ENCRYPTION_KEY,
            token_hmac_key=WARDGATE_TOKEN_HMAC_KEY,
        )
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "allauth",
    "allauth.account",
    "wardgate",
    "audit",
    "portal",
    "proxy",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "wardgate.urls"
ASGI_APPLICATION = "wardgate.asgi.application"
WSGI_APPLICATION = "wardgate.wsgi.application"

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
            ],
        },
    }
]

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the portal read while the gateway appends audit records; the busy timeout
    # makes concurrent writers wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"

PASSWORD_HASHERS = (
    ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if env_bool("WARDGATE_FAST_PASSWORD_HASHER", False) and not PRODUCTION
    else ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# Celery: Redis (or AMQP) in production; the embedded default uses kombu's filesystem
# transport, which needs no server yet still runs tasks asynchronously in a worker process.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(VAR_DIR / "celery" / "queue"),
        "data_folder_out": str(VAR_DIR / "celery" / "queue"),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {}
)
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else f"file://{VAR_DIR / 'celery' / 'results'}",
)
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# BigQuery used by the demo connection (the emulator) and by the bundled MCP server.
WARDGATE_BIGQUERY_PROJECT = env_str("WARDGATE_BIGQUERY_PROJECT", "wardgate-demo")
WARDGATE_BIGQUERY_ENDPOINT = env_str("WARDGATE_BIGQUERY_ENDPOINT", "")
WARDGATE_DEMO_DATASET = env_str("WARDGATE_DEMO_DATASET", "shop")
WARDGATE_DEMO_CUSTOMERS = env_int("WARDGATE_DEMO_CUSTOMERS", 2000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("WARDGATE_LOG_LEVEL", "WARNING")},
}

# The gateway data path.
WARDGATE_GATEWAY_MAX_BODY_BYTES = env_int("WARDGATE_GATEWAY_MAX_BODY_BYTES", 1_000_000)
WARDGATE_GATEWAY_UPSTREAM_TIMEOUT = float(env_int("WARDGATE_GATEWAY_UPSTREAM_TIMEOUT", 60))
WARDGATE_AUDIT_RESPONSE_CAP_BYTES = env_int("WARDGATE_AUDIT_RESPONSE_CAP_BYTES", 65_536)

# OIDC bearer tokens at the gateway (JWTs verified against the issuer's JWKS). Off when unset.
WARDGATE_OIDC_ISSUER = env_str("WARDGATE_OIDC_ISSUER", "")
WARDGATE_OIDC_AUDIENCE = env_list("WARDGATE_OIDC_AUDIENCE", ["wardgate"])
WARDGATE_OIDC_JWKS_URL = env_str("WARDGATE_OIDC_JWKS_URL", "")
WARDGATE_OIDC_GROUPS_CLAIM = env_str("WARDGATE_OIDC_GROUPS_CLAIM", "groups")
WARDGATE_OIDC_USERNAME_CLAIM = env_str("WARDGATE_OIDC_USERNAME_CLAIM", "preferred_username")
if WARDGATE_OIDC_ISSUER and not WARDGATE_OIDC_JWKS_URL:
    raise ValueError("WARDGATE_OIDC_JWKS_URL is required when WARDGATE_OIDC_ISSUER is set")

# Just-in-time approvals: how long the gateway holds an open call, how long an approval lives,
# and the portal address put in "approval pending" links.
WARDGATE_HOLD_TIMEOUT_SECONDS = env_int("WARDGATE_HOLD_TIMEOUT_SECONDS", 120)
WARDGATE_APPROVAL_TTL_HOURS = env_int("WARDGATE_APPROVAL_TTL_HOURS", 24)
WARDGATE_PORTAL_URL = env_str("WARDGATE_PORTAL_URL", "http://127.0.0.1:8000")
