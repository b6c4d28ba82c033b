"""The portal's typed configuration: sign-in, SSO group mapping, account lifecycle, incidents.

Built from the values wardgate.settings read and checked once at start-up; portal modules read
them here, never from `django.conf.settings`. (Django and allauth wiring stays in the settings.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wardgate.typed_config import SettingsBacked


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
    def from_settings(cls) -> PortalConfig:
        from django.conf import settings

        return cls(
            field_encryption_key=getattr(settings, "WARDGATE_FIELD_ENCRYPTION_KEY", ""),
            open_signup=bool(getattr(settings, "WARDGATE_OPEN_SIGNUP", False)),
            mfa_required_roles=tuple(getattr(settings, "WARDGATE_MFA_REQUIRED_ROLES",
                                             ["admin", "approver"])),
            sso_groups_claim=getattr(settings, "WARDGATE_SSO_GROUPS_CLAIM", "groups"),
            sso_group_map=dict(getattr(settings, "WARDGATE_SSO_GROUP_MAP", {}) or {}),
            inactive_account_days=getattr(settings, "WARDGATE_INACTIVE_ACCOUNT_DAYS", 90),
            access_request_max_hours=getattr(settings, "WARDGATE_ACCESS_REQUEST_MAX_HOURS",
                                             24 * 30),
            incident_window_minutes=getattr(settings, "WARDGATE_INCIDENT_WINDOW_MINUTES", 10),
            incident_max_denied=getattr(settings, "WARDGATE_INCIDENT_MAX_DENIED", 20),
            incident_max_rows=getattr(settings, "WARDGATE_INCIDENT_MAX_ROWS", 100_000),
            api_token_days=getattr(settings, "WARDGATE_API_TOKEN_DAYS", 30),
        )


portal_config = SettingsBacked(PortalConfig.from_settings)
