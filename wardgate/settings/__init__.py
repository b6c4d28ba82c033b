"""Wardgate settings: Django, DRF, allauth and Celery wiring, read from the environment.

Defaults run the embedded demo (SQLite, in-process task queue). `WARDGATE_MODE=production`
switches to strict mode, in which demo-only values are refused at start-up.

Every variable here is read through one `Env` (wardgate/env.py), which notes what it cannot read
instead of raising; every check adds to `STARTUP_PROBLEMS`. This module imports no app code and
reads none of the apps' values: each app reads its own variables in its typed configuration
(audit/config.py, portal/config.py, proxy/config.py, reports/config.py, wardgate/config.py).
Start-up (wardgate.apps.WardgateConfig.ready, run by django.setup() for manage.py, ASGI and
Celery alike) refuses once, listing these problems and every app's together.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dj_database_url
from django.utils.functional import SimpleLazyObject

from wardgate.env import BASE_DIR as BASE_DIR  # the checkout (or installed package) root
from wardgate.env import Env, deployment

from .safety import SafetyInputs, production_problems

if TYPE_CHECKING:
    from celery.schedules import crontab

env = Env()
STARTUP_PROBLEMS: list[str] = []

_deployment = deployment(env)
VAR_DIR = _deployment.var_dir
WARDGATE_MODE = _deployment.mode
if WARDGATE_MODE not in {"demo", "production"}:
    env.problem(f"WARDGATE_MODE must be 'demo' or 'production', got {WARDGATE_MODE!r}")
PRODUCTION = _deployment.production

SECRET_KEY = _deployment.secret_key
DEBUG = env.flag("WARDGATE_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = list(_deployment.allowed_hosts)
CSRF_TRUSTED_ORIGINS = env.items("WARDGATE_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env.text("DATABASE_URL", f"sqlite:///{VAR_DIR / 'wardgate.sqlite3'}")
CELERY_BROKER_URL = env.text("CELERY_BROKER_URL", "filesystem://")
REDIS_URL = env.text("REDIS_URL", "")

# The settings' own production checks; each app checks its own values (the keys it uses).
if PRODUCTION:
    STARTUP_PROBLEMS += production_problems(
        SafetyInputs(
            debug=DEBUG,
            secret_key=SECRET_KEY,
            database_url=DATABASE_URL,
            broker_url=CELERY_BROKER_URL,
            allowed_hosts=ALLOWED_HOSTS,
        )
    )

# ============================================================================ Django
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "drf_spectacular",
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
    "portal.middleware.MfaRequiredMiddleware",
    "portal.middleware.RefusalRecordingMiddleware",
]

ROOT_URLCONF = "wardgate.urls"
ASGI_APPLICATION = "wardgate.asgi.application"
WSGI_APPLICATION = "wardgate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Inside the package, so an installed wheel has them; searched before the apps' own
        # templates, so the allauth pages here replace allauth's.
        "DIRS": [Path(__file__).resolve().parent.parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    }
]

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the portal read while the gateway appends audit records; the busy timeout
    # makes concurrent writers wait instead of failing. synchronous=FULL: a commit (an audit
    # record the gateway acts on) survives a power loss or OS crash, not only a process crash
    # (NORMAL in WAL mode may lose the last commits); group commit shares the fsync.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared cache (login rate limits, TOTP replay protection) across processes when Redis is set.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}

PASSWORD_HASHERS = (
    ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if env.flag("WARDGATE_FAST_PASSWORD_HASHER", False) and not PRODUCTION
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

# text: one human-readable line per record (the demo's default); json: one JSON object per line
# with the request id of the call being served (wardgate/logs.py; production's default).
WARDGATE_LOG_FORMAT = env.text("WARDGATE_LOG_FORMAT", "json" if PRODUCTION else "text")
if WARDGATE_LOG_FORMAT not in {"text", "json"}:
    env.problem(f"WARDGATE_LOG_FORMAT must be 'text' or 'json', got {WARDGATE_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
                   "json": {"()": "wardgate.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "formatter": "json" if WARDGATE_LOG_FORMAT == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": env.text("WARDGATE_LOG_LEVEL", "WARNING")},
}

# ============================================================================ REST framework
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Wardgate portal API",
    "DESCRIPTION": "Access requests, approvals, grants, accounts, incidents, the audit trail and "
                   "evidence packs. "
                   "Authenticate with a portal API token (`Authorization: Bearer wga_...`) or a "
                   "signed-in session (plus CSRF token).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# ============================================================================ Sign-in (allauth)
# Local accounts; OIDC providers from env (off when unset); SAML only when allauth's saml extra
# (python3-saml) is installed; TOTP required for WARDGATE_MFA_REQUIRED_ROLES
# (portal.middleware.MfaRequiredMiddleware); failed logins rate limited.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "portal.adapters.SocialAccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login": env.text("WARDGATE_LOGIN_RATE", "30/m/ip"),
    "login_failed": env.text("WARDGATE_LOGIN_FAILED_RATE", "10/m/ip,5/5m/key"),
}
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_ONLY = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env.text("WARDGATE_MFA_ISSUER", "Wardgate")

SOCIALACCOUNT_PROVIDERS: dict = {}
_oidc_portal_server = env.text("WARDGATE_PORTAL_OIDC_SERVER_URL", "")
if _oidc_portal_server:
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [{
            "provider_id": env.text("WARDGATE_PORTAL_OIDC_PROVIDER_ID", "sso"),
            "name": env.text("WARDGATE_PORTAL_OIDC_NAME", "Single sign-on"),
            "client_id": env.text("WARDGATE_PORTAL_OIDC_CLIENT_ID", ""),
            "secret": env.text("WARDGATE_PORTAL_OIDC_CLIENT_SECRET", ""),
            "settings": {
                "server_url": _oidc_portal_server,
                "scope": env.items("WARDGATE_PORTAL_OIDC_SCOPES", ["openid", "profile", "email",
                                                                   "groups"]),
            },
        }],
    }
try:  # SAML only when allauth's saml extra is installed.
    import onelogin.saml2  # noqa: F401

    WARDGATE_SAML_AVAILABLE = True
except ImportError:
    WARDGATE_SAML_AVAILABLE = False
_saml_idp_entity = env.text("WARDGATE_PORTAL_SAML_IDP_ENTITY_ID", "")
if WARDGATE_SAML_AVAILABLE and _saml_idp_entity:
    INSTALLED_APPS.append("allauth.socialaccount.providers.saml")
    SOCIALACCOUNT_PROVIDERS["saml"] = {
        "APPS": [{
            "provider_id": env.text("WARDGATE_PORTAL_SAML_PROVIDER_ID", "saml"),
            "name": env.text("WARDGATE_PORTAL_SAML_NAME", "SAML single sign-on"),
            "client_id": env.text("WARDGATE_PORTAL_SAML_ORG", "wardgate"),
            "settings": {
                "attribute_mapping": {"uid": "uid", "email": "email", "groups": "groups"},
                "idp": {
                    "entity_id": _saml_idp_entity,
                    "metadata_url": env.text("WARDGATE_PORTAL_SAML_IDP_METADATA_URL", ""),
                },
            },
        }],
    }

# ============================================================================ Celery
# Redis (or AMQP) in production; the embedded default uses kombu's filesystem transport, which
# needs no server yet still runs tasks asynchronously in a worker process.
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
CELERY_RESULT_BACKEND = env.text(
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


def _monthly_at_0130_on_day_1() -> crontab:
    from celery.schedules import crontab

    return crontab(minute=30, hour=1, day_of_month=1)


# Beat entries whose schedule is an app's value read it here too (each app's configuration reads
# and checks the same variables; the same problem is listed once).
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "portal-disable-inactive-accounts": {"task": "portal.disable_inactive_accounts",
                                         "schedule": 3600.0},
    "portal-evaluate-incident-rules": {"task": "portal.evaluate_incident_rules", "schedule": 60.0},
    "portal-expire-approvals": {"task": "portal.expire_approvals", "schedule": 60.0},
    "audit-checkpoint": {"task": "audit.checkpoint",
                         "schedule": 60.0 * env.integer("WARDGATE_CHECKPOINT_INTERVAL_MINUTES", 15)},
    "audit-retention-purge": {"task": "audit.retention_purge", "schedule": 24 * 3600.0},
}
if env.json_objects("WARDGATE_SIEM_SINKS"):
    CELERY_BEAT_SCHEDULE["audit-siem-export"] = {
        "task": "audit.siem_export",
        "schedule": float(env.integer("WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS", 60))}
if env.flag("WARDGATE_PACK_MONTHLY", True):
    CELERY_BEAT_SCHEDULE["reports-monthly-evidence-pack"] = {
        "task": "reports.evidence_pack_monthly",
        # Built when beat first reads it: importing celery.schedules (and kombu with it) costs
        # every process that reads these settings ~18 MiB, gateway workers included.
        "schedule": SimpleLazyObject(_monthly_at_0130_on_day_1),
    }

# ============================================================================ Start-up problems
# Not raised here: wardgate.apps.WardgateConfig.ready() lists these with every app's problems.
STARTUP_PROBLEMS[:0] = env.problems
