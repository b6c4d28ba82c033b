"""The portal's typed configuration: sign-in, SSO group mapping, account lifecycle, incidents.

Read from the environment once (WARDGATE_FIELD_ENCRYPTION_KEY, WARDGATE_OPEN_SIGNUP,
WARDGATE_MFA_REQUIRED_ROLES, WARDGATE_SSO_*, account lifecycle and incident rules), with the
checks start-up needs; portal modules read them here. (Django and allauth wiring stays in the
settings.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wardgate.env import Env, deployment
from wardgate.typed_config import EnvBacked


@dataclass(frozen=True, slots=True)
class PortalConfig:
    # Encrypts upstream credentials at rest (portal/credentials.py).
    field_encryption_key: str = ""
    # Self sign-up; accounts are otherwise created by admins or provisioned by SSO.
    open_signup: bool = False
    # Portal roles whose members must have a TOTP authenticator before they can do anything.
    mfa_required_roles: tuple[str, ...] = ("admin", "approver")
    # An SSO identity's groups claim, and how its values map to portal roles / Django groups.
    sso_groups_claim: str = "groups"
    sso_group_map: dict[str, str] = field(default_factory=dict)
    inactive_account_days: int = 90
    access_request_max_hours: int = 24 * 30
    incident_window_minutes: int = 10
    incident_max_denied: int = 20
    incident_max_rows: int = 100_000
    api_token_days: int = 30

    @classmethod
    def from_env(cls, env: Env) -> PortalConfig:
        deploy = deployment(env)
        # The demo derives the key from the secret key; production refuses to start without it.
        field_key = env.text("WARDGATE_FIELD_ENCRYPTION_KEY",
                             "" if deploy.production else deploy.demo_key("fields"))
        if deploy.production and len(field_key) < 32:
            env.problem("WARDGATE_FIELD_ENCRYPTION_KEY must be set (32+ characters)")
        return cls(
            field_encryption_key=field_key,
            open_signup=env.flag("WARDGATE_OPEN_SIGNUP", False),
            mfa_required_roles=tuple(env.items("WARDGATE_MFA_REQUIRED_ROLES",
                                               ["admin", "approver"])),
            sso_groups_claim=env.text("WARDGATE_SSO_GROUPS_CLAIM", "groups"),
            # "wardgate-admins=admin,wardgate-engineers=engineer": used for portal SSO and
            # gateway OIDC tokens alike; a claim value not in the map grants nothing.
            sso_group_map=dict(item.split("=", 1)
                               for item in env.items("WARDGATE_SSO_GROUP_MAP", []) if "=" in item),
            inactive_account_days=env.integer("WARDGATE_INACTIVE_ACCOUNT_DAYS", 90),
            access_request_max_hours=env.integer("WARDGATE_ACCESS_REQUEST_MAX_HOURS", 24 * 30),
            incident_window_minutes=env.integer("WARDGATE_INCIDENT_WINDOW_MINUTES", 10),
            incident_max_denied=env.integer("WARDGATE_INCIDENT_MAX_DENIED", 20),
            incident_max_rows=env.integer("WARDGATE_INCIDENT_MAX_ROWS", 100_000),
            api_token_days=env.integer("WARDGATE_API_TOKEN_DAYS", 30),
        )


portal_config = EnvBacked(PortalConfig.from_env)
