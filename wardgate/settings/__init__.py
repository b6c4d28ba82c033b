"""Wardgate settings, read from environment variables once.

Defaults run the embedded demo (SQLite, in-process task queue). `WARDGATE_MODE=production`
switches to strict mode, in which demo-only values are refused at start-up.

Every variable is read through one `Env`, which notes what it cannot read instead of raising;
every check adds to `STARTUP_PROBLEMS`; start-up is refused once, at the end of this module,
listing every problem together. This module imports no app code: the apps read their values
through their typed configuration (audit/config.py, portal/config.py, reports/config.py,
proxy/config.py), built from the values below.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from wardgate.installation_secret import installation_secret
from wardgate.keys import demo_public_key, demo_signing_key, signing_key_problem

from .env import Env
from .safety import DEMO_SECRET_KEY, SafetyInputs, UnsafeSettings, production_problems

env = Env()
STARTUP_PROBLEMS: list[str] = []

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env.text("WARDGATE_VAR_DIR", str(BASE_DIR / "var")))

WARDGATE_MODE = env.text("WARDGATE_MODE", "demo").strip().lower()
if WARDGATE_MODE not in {"demo", "production"}:
    env.problem(f"WARDGATE_MODE must be 'demo' or 'production', got {WARDGATE_MODE!r}")
PRODUCTION = WARDGATE_MODE == "production"

SECRET_KEY = env.text("WARDGATE_SECRET_KEY", "" if PRODUCTION else DEMO_SECRET_KEY)
DEBUG = env.flag("WARDGATE_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env.items("WARDGATE_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.items("WARDGATE_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env.text("DATABASE_URL", f"sqlite:///{VAR_DIR / 'wardgate.sqlite3'}")
CELERY_BROKER_URL = env.text("CELERY_BROKER_URL", "filesystem://")
REDIS_URL = env.text("REDIS_URL", "")


def _derived_demo_key(purpose: str) -> str:
    # Demo-only: derive per-purpose keys from the secret so one variable configures the demo.
    return hashlib.sha256(f"{purpose}:{SECRET_KEY}".encode()).hexdigest()


WARDGATE_FIELD_ENCRYPTION_KEY = env.text(
    "WARDGATE_FIELD_ENCRYPTION_KEY", "" if PRODUCTION else _derived_demo_key("fields")
)
WARDGATE_TOKEN_HMAC_KEY = env.text(
    "WARDGATE_TOKEN_HMAC_KEY", "" if PRODUCTION else _derived_demo_key("tokenize")
)
# Keys the audit hash chain (HMAC-SHA256, audit/chain.py). Never stored in the database: without
# it, a database-level attacker cannot recompute the chain after an edit. The demo's is random,
# made for the installation in VAR_DIR/audit-chain.key (0600): one derived from the demo's
# built-in secret would be public (it is in the source), so it would protect nothing.
WARDGATE_AUDIT_CHAIN_KEY = env.optional_text("WARDGATE_AUDIT_CHAIN_KEY")
if WARDGATE_AUDIT_CHAIN_KEY is None:
    WARDGATE_AUDIT_CHAIN_KEY = ""
    if not PRODUCTION:
        try:
            WARDGATE_AUDIT_CHAIN_KEY = installation_secret(VAR_DIR / "audit-chain.key")
        except (OSError, ValueError) as _exc:
            STARTUP_PROBLEMS.append(f"the demo's audit chain key cannot be kept in "
                                    f"{VAR_DIR / 'audit-chain.key'} ({_exc}); set "
                                    f"WARDGATE_AUDIT_CHAIN_KEY")
        else:
            # Processes started from this one (the demo's web server and worker, test gateways
            # with a VAR_DIR of their own) append to the same chain, so they use the same key.
            os.environ["WARDGATE_AUDIT_CHAIN_KEY"] = WARDGATE_AUDIT_CHAIN_KEY
# Keys the chain was written under before the current one: accepted only for the records before
# the first record under the current key, like the unkeyed v1 format (an old record rewritten
# after that is still caught). The demo's: the public key earlier versions derived for it.
WARDGATE_AUDIT_CHAIN_LEGACY_KEYS = env.items(
    "WARDGATE_AUDIT_CHAIN_LEGACY_KEYS", [] if PRODUCTION else [_derived_demo_key("audit-chain")])

if PRODUCTION:
    STARTUP_PROBLEMS += production_problems(
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
    # makes concurrent writers wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
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

# ============================================================================ App values
# Read here once, with the checks start-up needs; each app reads them through its typed
# configuration, never from these names directly.

# --- Gateway: proxy/config.py (GatewayConfig, AdmissionLimits, SqlLimits) -------------------
WARDGATE_GATEWAY_MAX_BODY_BYTES = env.integer("WARDGATE_GATEWAY_MAX_BODY_BYTES", 1_000_000)
WARDGATE_GATEWAY_UPSTREAM_TIMEOUT = float(env.integer("WARDGATE_GATEWAY_UPSTREAM_TIMEOUT", 60))
# Every call the gateway makes to BigQuery itself (schema lookups, dry runs), retries included.
WARDGATE_BIGQUERY_TIMEOUT = env.integer("WARDGATE_BIGQUERY_TIMEOUT", 15)
# Host names an Origin header may carry at /mcp/ (DNS-rebinding protection, as the MCP transport
# spec asks); default: WARDGATE_ALLOWED_HOSTS.
WARDGATE_GATEWAY_ALLOWED_ORIGINS = env.items("WARDGATE_GATEWAY_ALLOWED_ORIGINS", [])
WARDGATE_AUDIT_RESPONSE_CAP_BYTES = env.integer("WARDGATE_AUDIT_RESPONSE_CAP_BYTES", 65_536)

# Admission (proxy/admission.py): per identity, per process, what may be open at once;
# over a limit the gateway answers 429 with Retry-After at once. Slow clients: headers
# (proxy/http_protocol.py) and bodies must arrive within these many seconds.
WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY = env.integer(
    "WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY", 16)
WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY = env.integer(
    "WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY", 4)
WARDGATE_GATEWAY_MAX_SESSIONS_PER_IDENTITY = env.integer(
    "WARDGATE_GATEWAY_MAX_SESSIONS_PER_IDENTITY", 16)
WARDGATE_GATEWAY_SESSION_IDLE_SECONDS = env.integer("WARDGATE_GATEWAY_SESSION_IDLE_SECONDS", 900)
WARDGATE_GATEWAY_STREAM_MAX_SECONDS = env.integer("WARDGATE_GATEWAY_STREAM_MAX_SECONDS", 3600)
WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE = env.integer("WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE", 64)
WARDGATE_GATEWAY_RETRY_AFTER_SECONDS = env.integer("WARDGATE_GATEWAY_RETRY_AFTER_SECONDS", 2)
WARDGATE_GATEWAY_HEADER_TIMEOUT = env.integer("WARDGATE_GATEWAY_HEADER_TIMEOUT", 10)
WARDGATE_GATEWAY_BODY_TIMEOUT = env.integer("WARDGATE_GATEWAY_BODY_TIMEOUT", 30)

# What this process serves (`manage.py serve --only`, wardgate/asgi.py): "" both, "gateway"
# (the portal's URLs answer 404), or "portal" (/mcp/ answers 404). /healthz and /readyz always.
WARDGATE_SERVE_ONLY = env.text("WARDGATE_SERVE_ONLY", "").strip().lower()
if WARDGATE_SERVE_ONLY not in {"", "gateway", "portal"}:
    env.problem(f"WARDGATE_SERVE_ONLY must be 'gateway', 'portal' or empty, "
                f"got {WARDGATE_SERVE_ONLY!r}")

# Prometheus metrics at /metrics (proxy/metrics.py): on in the demo, off in production unless
# enabled; a scrape must then carry "Authorization: Bearer <WARDGATE_METRICS_TOKEN>".
WARDGATE_METRICS_ENABLED = env.flag("WARDGATE_METRICS_ENABLED", not PRODUCTION)
WARDGATE_METRICS_TOKEN = env.text("WARDGATE_METRICS_TOKEN", "")
if PRODUCTION and WARDGATE_METRICS_ENABLED and len(WARDGATE_METRICS_TOKEN) < 16:
    STARTUP_PROBLEMS.append("WARDGATE_METRICS_TOKEN must be set (16+ characters) when "
                            "WARDGATE_METRICS_ENABLED is on in production")

# SQL analysis bounds (proxy/sql_limits.py): statements over a bound are refused before any
# parsing; analysis runs in worker processes and a statement that takes longer than the budget
# is refused as too complex.
WARDGATE_SQL_MAX_CHARS = env.integer("WARDGATE_SQL_MAX_CHARS", 100_000)
WARDGATE_SQL_MAX_TOKENS = env.integer("WARDGATE_SQL_MAX_TOKENS", 10_000)
WARDGATE_SQL_MAX_DEPTH = env.integer("WARDGATE_SQL_MAX_DEPTH", 32)
WARDGATE_SQL_ANALYSIS_BUDGET_MS = env.integer("WARDGATE_SQL_ANALYSIS_BUDGET_MS", 2000)
WARDGATE_SQL_ANALYSIS_WORKERS = env.integer("WARDGATE_SQL_ANALYSIS_WORKERS", 2)

# OIDC bearer tokens at the gateway (JWTs verified against the issuer's JWKS). Off when unset.
WARDGATE_OIDC_ISSUER = env.text("WARDGATE_OIDC_ISSUER", "")
WARDGATE_OIDC_AUDIENCE = env.items("WARDGATE_OIDC_AUDIENCE", ["wardgate"])
WARDGATE_OIDC_JWKS_URL = env.text("WARDGATE_OIDC_JWKS_URL", "")
WARDGATE_OIDC_GROUPS_CLAIM = env.text("WARDGATE_OIDC_GROUPS_CLAIM", "groups")
WARDGATE_OIDC_USERNAME_CLAIM = env.text("WARDGATE_OIDC_USERNAME_CLAIM", "preferred_username")
WARDGATE_OIDC_HTTP_TIMEOUT = env.integer("WARDGATE_OIDC_HTTP_TIMEOUT", 3)
if WARDGATE_OIDC_ISSUER and not WARDGATE_OIDC_JWKS_URL:
    env.problem("WARDGATE_OIDC_JWKS_URL is required when WARDGATE_OIDC_ISSUER is set")

# Just-in-time approvals: how long the gateway holds an open call, how long an approval lives,
# and the portal address put in "approval pending" links.
WARDGATE_HOLD_TIMEOUT_SECONDS = env.integer("WARDGATE_HOLD_TIMEOUT_SECONDS", 120)
WARDGATE_APPROVAL_TTL_HOURS = env.integer("WARDGATE_APPROVAL_TTL_HOURS", 24)
# Empty: links use the address the request came in at (right for the demo and any --port);
# set it when clients reach the gateway at another address than people reach the portal.
WARDGATE_PORTAL_URL = env.text("WARDGATE_PORTAL_URL", "")

# --- Portal: portal/config.py (PortalConfig) ------------------------------------------------
# Accounts are created by admins (or provisioned by SSO), never by self sign-up.
WARDGATE_OPEN_SIGNUP = env.flag("WARDGATE_OPEN_SIGNUP", False)
# Portal roles whose members must have a TOTP authenticator before they can do anything.
WARDGATE_MFA_REQUIRED_ROLES = env.items("WARDGATE_MFA_REQUIRED_ROLES", ["admin", "approver"])
# An SSO identity's groups claim, and how its values map to portal roles / Django groups:
# "wardgate-admins=admin,wardgate-engineers=engineer". Used for portal SSO and gateway OIDC
# tokens alike; a claim value not in the map grants nothing (portal.services.identity).
WARDGATE_SSO_GROUPS_CLAIM = env.text("WARDGATE_SSO_GROUPS_CLAIM", "groups")
WARDGATE_SSO_GROUP_MAP = dict(
    item.split("=", 1) for item in env.items("WARDGATE_SSO_GROUP_MAP", []) if "=" in item
)
# Account lifecycle (AC-2) and automatic quarantine rules (IR-4).
WARDGATE_INACTIVE_ACCOUNT_DAYS = env.integer("WARDGATE_INACTIVE_ACCOUNT_DAYS", 90)
WARDGATE_ACCESS_REQUEST_MAX_HOURS = env.integer("WARDGATE_ACCESS_REQUEST_MAX_HOURS", 24 * 30)
WARDGATE_INCIDENT_WINDOW_MINUTES = env.integer("WARDGATE_INCIDENT_WINDOW_MINUTES", 10)
WARDGATE_INCIDENT_MAX_DENIED = env.integer("WARDGATE_INCIDENT_MAX_DENIED", 20)
WARDGATE_INCIDENT_MAX_ROWS = env.integer("WARDGATE_INCIDENT_MAX_ROWS", 100_000)
WARDGATE_API_TOKEN_DAYS = env.integer("WARDGATE_API_TOKEN_DAYS", 30)

# --- Audit: audit/config.py (AuditConfig) ---------------------------------------------------
# Ed25519 key signing checkpoints of the chain head: PEM or base64 of 32 raw bytes. Extra public
# keys (base64 raw, comma-separated) keep checkpoints signed by a rotated-out key verifiable.
# The demo's is derived from a random secret made for the installation in
# VAR_DIR/checkpoint-signing.key (0600), like the chain key: one derived from the built-in demo
# secret is public, so anyone could forge checkpoints with it. Checkpoints earlier versions
# signed with that public key still verify (it is added to the verify keys), as before.
WARDGATE_CHECKPOINT_SIGNING_KEY = env.optional_text("WARDGATE_CHECKPOINT_SIGNING_KEY")
WARDGATE_CHECKPOINT_VERIFY_KEYS = env.items("WARDGATE_CHECKPOINT_VERIFY_KEYS", [])
if WARDGATE_CHECKPOINT_SIGNING_KEY is None:
    WARDGATE_CHECKPOINT_SIGNING_KEY = ""
    if not PRODUCTION:
        try:
            WARDGATE_CHECKPOINT_SIGNING_KEY = demo_signing_key(
                installation_secret(VAR_DIR / "checkpoint-signing.key"))
        except (OSError, ValueError) as _exc:
            STARTUP_PROBLEMS.append(f"the demo's checkpoint signing key cannot be kept in "
                                    f"{VAR_DIR / 'checkpoint-signing.key'} ({_exc}); set "
                                    f"WARDGATE_CHECKPOINT_SIGNING_KEY")
        else:
            WARDGATE_CHECKPOINT_VERIFY_KEYS.append(demo_public_key(SECRET_KEY))
            # Processes started from this one sign and verify the same installation's chain.
            os.environ["WARDGATE_CHECKPOINT_SIGNING_KEY"] = WARDGATE_CHECKPOINT_SIGNING_KEY
            os.environ["WARDGATE_CHECKPOINT_VERIFY_KEYS"] = ",".join(
                WARDGATE_CHECKPOINT_VERIFY_KEYS)
# Write-once location for checkpoint copies, outside the database: a directory (in the demo
# var/checkpoints), or gs://bucket/prefix. Required in production.
WARDGATE_CHECKPOINT_EXPORT = env.text(
    "WARDGATE_CHECKPOINT_EXPORT", "" if PRODUCTION else str(VAR_DIR / "checkpoints"))
WARDGATE_CHECKPOINT_INTERVAL_MINUTES = env.integer("WARDGATE_CHECKPOINT_INTERVAL_MINUTES", 15)

# SIEM sinks: a JSON list of objects, e.g.
# [{"name": "siem", "type": "syslog", "host": "10.0.0.5", "port": 6514, "tls": true}]
# (see audit/export/config.py for every key). HTTP deliveries carry
# X-Wardgate-Signature: sha256=HMAC(WARDGATE_SIEM_HMAC_SECRET, body).
WARDGATE_SIEM_SINKS = env.json_objects("WARDGATE_SIEM_SINKS")
WARDGATE_SIEM_HMAC_SECRET = env.text("WARDGATE_SIEM_HMAC_SECRET", "")
WARDGATE_SIEM_BATCH_SIZE = env.integer("WARDGATE_SIEM_BATCH_SIZE", 500)
WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS = env.integer("WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS", 60)

# Retention: records older than this many days are purged once a signed checkpoint and an
# exported evidence pack cover them, and no legal hold is active.
WARDGATE_AUDIT_RETENTION_DAYS = env.integer("WARDGATE_AUDIT_RETENTION_DAYS", 365, minimum=1)

if PRODUCTION and not WARDGATE_CHECKPOINT_EXPORT.strip():
    STARTUP_PROBLEMS.append("WARDGATE_CHECKPOINT_EXPORT must name a write-once location outside "
                            "the database (a WORM directory or gs://bucket/prefix)")
if PRODUCTION and len(WARDGATE_AUDIT_CHAIN_KEY) < 32:
    STARTUP_PROBLEMS.append("WARDGATE_AUDIT_CHAIN_KEY must be set (32+ random characters, kept "
                            "out of the database)")
if PRODUCTION and not WARDGATE_CHECKPOINT_SIGNING_KEY:
    STARTUP_PROBLEMS.append("WARDGATE_CHECKPOINT_SIGNING_KEY must be set (Ed25519, PEM or base64)")
elif _problem := signing_key_problem(WARDGATE_CHECKPOINT_SIGNING_KEY):
    STARTUP_PROBLEMS.append(f"WARDGATE_CHECKPOINT_SIGNING_KEY: {_problem}")
if PRODUCTION and not WARDGATE_SIEM_HMAC_SECRET and any(
    s.get("type") == "http" and not s.get("hmac_secret") for s in WARDGATE_SIEM_SINKS
):
    STARTUP_PROBLEMS.append("WARDGATE_SIEM_HMAC_SECRET must be set for HTTP SIEM sinks")

# --- Evidence packs: reports/config.py (ReportsConfig); see reports/README.md -----------------
# Where finished packs (zip files) are kept.
WARDGATE_PACK_DIR = Path(env.text("WARDGATE_PACK_DIR", str(VAR_DIR / "packs")))
# Ed25519 key signing each pack's manifest.json: PEM (PKCS#8) or base64 of 32 raw bytes. The demo
# derives one from the secret key; production mode refuses to start without one.
WARDGATE_PACK_SIGNING_KEY = env.text(
    "WARDGATE_PACK_SIGNING_KEY",
    "" if PRODUCTION else demo_signing_key(SECRET_KEY, purpose="wardgate-evidence-pack-signing"),
)
if PRODUCTION and not WARDGATE_PACK_SIGNING_KEY.strip():
    STARTUP_PROBLEMS.append("WARDGATE_PACK_SIGNING_KEY must be set "
                            "(Ed25519 private key: PEM, or base64 of 32 raw bytes)")
elif _problem := signing_key_problem(WARDGATE_PACK_SIGNING_KEY, "WARDGATE_PACK_SIGNING_KEY"):
    STARTUP_PROBLEMS.append(_problem)
# System identification on each pack's cover and in its OSCAL metadata: the organisation that
# owns the system, the system's name, its environment and its authorization boundary.
WARDGATE_PACK_ORGANISATION = env.text("WARDGATE_PACK_ORGANISATION", "Wardgate demo organisation")
WARDGATE_PACK_SYSTEM_NAME = env.text("WARDGATE_PACK_SYSTEM_NAME", "Wardgate")
WARDGATE_PACK_ENVIRONMENT = env.text("WARDGATE_PACK_ENVIRONMENT",
                                     "production" if PRODUCTION else "demo")
WARDGATE_PACK_BOUNDARY = env.text(
    "WARDGATE_PACK_BOUNDARY",
    "The Wardgate gateway (MCP data path to BigQuery), its compliance portal, audit log and "
    "Celery workers; the upstream MCP servers, BigQuery and the identity provider are outside "
    "the boundary.")
# The organisation's OSCAL assessment plan (SAP) these results answer; empty: the pack carries a
# placeholder resource the organisation replaces (see reports/README.md).
WARDGATE_PACK_ASSESSMENT_PLAN_URL = env.text("WARDGATE_PACK_ASSESSMENT_PLAN_URL", "")
if PRODUCTION and WARDGATE_PACK_ORGANISATION == "Wardgate demo organisation":
    STARTUP_PROBLEMS.append("WARDGATE_PACK_ORGANISATION must name the organisation that owns "
                            "the system (it is printed on every evidence pack)")
# Records sampled per population for the PDF (full populations are always in the CSVs).
WARDGATE_PACK_SAMPLE_SIZE = env.integer("WARDGATE_PACK_SAMPLE_SIZE", 25)
# A disable must stop an account's calls within this many seconds (AC-2 evidence).
WARDGATE_PACK_DISABLE_SLA_SECONDS = env.integer("WARDGATE_PACK_DISABLE_SLA_SECONDS", 1)
# Monthly pack of the previous calendar month, all controls (Celery beat), on by default.
WARDGATE_PACK_MONTHLY = env.flag("WARDGATE_PACK_MONTHLY", True)

# --- Demo: BigQuery used by the demo connection (the emulator) and by the bundled MCP server ---
WARDGATE_BIGQUERY_PROJECT = env.text("WARDGATE_BIGQUERY_PROJECT", "wardgate-demo")
WARDGATE_BIGQUERY_ENDPOINT = env.text("WARDGATE_BIGQUERY_ENDPOINT", "")
WARDGATE_DEMO_DATASET = env.text("WARDGATE_DEMO_DATASET", "shop")
WARDGATE_DEMO_CUSTOMERS = env.integer("WARDGATE_DEMO_CUSTOMERS", 2000)

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

CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "portal-disable-inactive-accounts": {"task": "portal.disable_inactive_accounts",
                                         "schedule": 3600.0},
    "portal-evaluate-incident-rules": {"task": "portal.evaluate_incident_rules", "schedule": 60.0},
    "portal-expire-approvals": {"task": "portal.expire_approvals", "schedule": 60.0},
    "audit-checkpoint": {"task": "audit.checkpoint",
                         "schedule": 60.0 * WARDGATE_CHECKPOINT_INTERVAL_MINUTES},
    "audit-retention-purge": {"task": "audit.retention_purge", "schedule": 24 * 3600.0},
}
if WARDGATE_SIEM_SINKS:
    CELERY_BEAT_SCHEDULE["audit-siem-export"] = {
        "task": "audit.siem_export", "schedule": float(WARDGATE_SIEM_EXPORT_INTERVAL_SECONDS)}
if WARDGATE_PACK_MONTHLY:
    CELERY_BEAT_SCHEDULE["reports-monthly-evidence-pack"] = {
        "task": "reports.evidence_pack_monthly",
        "schedule": crontab(minute=30, hour=1, day_of_month=1),
    }

# ============================================================================ Start-up refusal
STARTUP_PROBLEMS[:0] = env.problems
if STARTUP_PROBLEMS:
    raise UnsafeSettings(
        f"Refusing to start{' in production mode' if PRODUCTION else ''}:\n- "
        + "\n- ".join(STARTUP_PROBLEMS)
    )
