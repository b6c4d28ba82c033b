"""The gateway's typed configuration, read once from the environment.

`gateway_config()` is the configuration this process read (and start-up checked): the gateway
builds on it, and so does code outside the gateway that needs a gateway value (the
tokenization key, the audit response cap).
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from proxy.admission import AdmissionLimits
from proxy.hold import HoldSettings
from proxy.oidc import OidcConfig
from proxy.sql_limits import SqlLimits
from wardgate.env import Env, deployment
from wardgate.typed_config import EnvBacked


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may scrape /metrics: nobody when disabled; with a token, only a bearer of it."""

    enabled: bool = True
    token: str = ""

    def refusal(self, authorization: str) -> int | None:
        """None to serve the scrape, else the HTTP status to answer with."""
        if not self.enabled:
            return 404
        if self.token and not hmac.compare_digest(authorization.encode(),
                                                  f"Bearer {self.token}".encode()):
            return 401
        return None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    token_key: bytes
    oidc: OidcConfig | None = None
    max_body_bytes: int = 1_000_000
    upstream_timeout_seconds: float = 60.0
    bigquery_timeout_seconds: float = 15.0
    connection_cache_seconds: float = 30.0
    revision_poll_seconds: float = 0.2
    audit_response_cap_bytes: int = 65_536
    hold: HoldSettings = HoldSettings()
    admission: AdmissionLimits = AdmissionLimits()
    sql_limits: SqlLimits = SqlLimits()
    # A client has this long to send a request's headers (slow-loris), body timeouts are in
    # `admission`.
    header_timeout_seconds: float = 10.0
    # Host names the gateway answers to, and the host names an Origin header may carry (MCP
    # transport spec: validate Origin against DNS rebinding). Django patterns (".example.com").
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    allowed_origins: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    metrics: MetricsAccess = MetricsAccess()
    # Off: a read-only call (SELECT, metadata) is forwarded while its decision record is being
    # written (its answer still waits for the record). On: every decision record is durable
    # before anything is forwarded.
    strict_decision_order: bool = False

    @classmethod
    def from_env(cls, env: Env) -> GatewayConfig:
        """Every WARDGATE_GATEWAY_*, WARDGATE_SQL_*, WARDGATE_OIDC_*, metrics and approval-hold
        variable, with the checks start-up needs noted in `env.problems`."""
        deploy = deployment(env)
        # Keys masking by tokenization (HMAC-SHA256); the demo derives one from the secret key.
        token_key = env.text("WARDGATE_TOKEN_HMAC_KEY",
                             "" if deploy.production else deploy.demo_key("tokenize"))
        if deploy.production and len(token_key) < 32:
            env.problem("WARDGATE_TOKEN_HMAC_KEY must be set (32+ characters)")

        # OIDC bearer tokens at the gateway (JWTs verified against the issuer's JWKS). Off when
        # the issuer is unset.
        oidc = None
        issuer = env.text("WARDGATE_OIDC_ISSUER", "")
        if issuer:
            jwks_url = env.text("WARDGATE_OIDC_JWKS_URL", "")
            if not jwks_url:
                env.problem("WARDGATE_OIDC_JWKS_URL is required when WARDGATE_OIDC_ISSUER is set")
            else:
                try:
                    oidc = OidcConfig(
                        issuer=issuer,
                        audience=tuple(env.items("WARDGATE_OIDC_AUDIENCE", ["wardgate"])),
                        jwks_url=jwks_url,
                        groups_claim=env.text("WARDGATE_OIDC_GROUPS_CLAIM", "groups"),
                        username_claim=env.text("WARDGATE_OIDC_USERNAME_CLAIM",
                                                "preferred_username"),
                        http_timeout_seconds=float(env.integer("WARDGATE_OIDC_HTTP_TIMEOUT", 3)),
                    )
                except ValueError as exc:  # the JWKS URL policy (proxy/jwks.py) refused it
                    env.problem(f"WARDGATE_OIDC_JWKS_URL: {exc}")

        # Prometheus metrics at /metrics: on in the demo, off in production unless enabled; a
        # scrape must then carry "Authorization: Bearer <WARDGATE_METRICS_TOKEN>".
        metrics = MetricsAccess(enabled=env.flag("WARDGATE_METRICS_ENABLED", not deploy.production),
                                token=env.text("WARDGATE_METRICS_TOKEN", ""))
        if deploy.production and metrics.enabled and len(metrics.token) < 16:
            env.problem("WARDGATE_METRICS_TOKEN must be set (16+ characters) when "
                        "WARDGATE_METRICS_ENABLED is on in production")

        return cls(
            token_key=token_key.encode(),
            oidc=oidc,
            max_body_bytes=env.integer("WARDGATE_GATEWAY_MAX_BODY_BYTES", 1_000_000),
            upstream_timeout_seconds=float(env.integer("WARDGATE_GATEWAY_UPSTREAM_TIMEOUT", 60)),
            # Every call the gateway makes to BigQuery itself (schema lookups, dry runs).
            bigquery_timeout_seconds=float(env.integer("WARDGATE_BIGQUERY_TIMEOUT", 15)),
            audit_response_cap_bytes=env.integer("WARDGATE_AUDIT_RESPONSE_CAP_BYTES", 65_536),
            strict_decision_order=env.flag("WARDGATE_GATEWAY_STRICT_DECISION_ORDER", False),
            allowed_hosts=deploy.allowed_hosts,
            # Host names an Origin header may carry at /mcp/ (DNS-rebinding protection, as the
            # MCP transport spec asks); default: WARDGATE_ALLOWED_HOSTS.
            allowed_origins=tuple(env.items("WARDGATE_GATEWAY_ALLOWED_ORIGINS", [])
                                  or deploy.allowed_hosts),
            # Per identity, per process, what may be open at once; over a limit the gateway
            # answers 429 with Retry-After at once (proxy/admission.py).
            admission=AdmissionLimits(
                max_requests=env.integer("WARDGATE_GATEWAY_MAX_REQUESTS_PER_IDENTITY", 16),
                max_streams=env.integer("WARDGATE_GATEWAY_MAX_STREAMS_PER_IDENTITY", 4),
                max_sessions=env.integer("WARDGATE_GATEWAY_MAX_SESSIONS_PER_IDENTITY", 16),
                session_idle_seconds=float(
                    env.integer("WARDGATE_GATEWAY_SESSION_IDLE_SECONDS", 900)),
                stream_max_seconds=float(env.integer("WARDGATE_GATEWAY_STREAM_MAX_SECONDS", 3600)),
                upstream_pool_size=env.integer("WARDGATE_GATEWAY_UPSTREAM_POOL_SIZE", 64),
                retry_after_seconds=env.integer("WARDGATE_GATEWAY_RETRY_AFTER_SECONDS", 2),
                body_timeout_seconds=float(env.integer("WARDGATE_GATEWAY_BODY_TIMEOUT", 30)),
            ),
            # Statements over a bound are refused before any parsing; analysis runs in worker
            # processes, and one that takes longer than the budget is refused as too complex.
            sql_limits=SqlLimits(
                max_chars=env.integer("WARDGATE_SQL_MAX_CHARS", 100_000),
                max_tokens=env.integer("WARDGATE_SQL_MAX_TOKENS", 10_000),
                max_depth=env.integer("WARDGATE_SQL_MAX_DEPTH", 32),
                budget_seconds=env.integer("WARDGATE_SQL_ANALYSIS_BUDGET_MS", 2000) / 1000,
                workers=env.integer("WARDGATE_SQL_ANALYSIS_WORKERS", 2),
            ),
            header_timeout_seconds=float(env.integer("WARDGATE_GATEWAY_HEADER_TIMEOUT", 10)),
            metrics=metrics,
            # Just-in-time approvals: how long the gateway holds an open call, how long an
            # approval lives, and the portal address put in "approval pending" links (empty:
            # the address the request came in at).
            hold=HoldSettings(
                timeout_seconds=float(env.integer("WARDGATE_HOLD_TIMEOUT_SECONDS", 120)),
                approval_ttl=dt.timedelta(hours=env.integer("WARDGATE_APPROVAL_TTL_HOURS", 24)),
                portal_url=env.text("WARDGATE_PORTAL_URL", ""),
            ),
        )


gateway_config = EnvBacked(GatewayConfig.from_env)
