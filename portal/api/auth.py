"""Portal API authentication with portal API tokens (`Authorization: Bearer wga_…`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        from portal.services.api_tokens import API_TOKEN_PREFIX, ApiTokenInvalid, api_token_resolve

        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip().startswith(API_TOKEN_PREFIX):
            return None
        try:
            api_token = api_token_resolve(token.strip())
        except ApiTokenInvalid as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return api_token.user, api_token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="wardgate-portal"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.api.auth.ApiTokenAuthentication"
    name = "portalApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "wga_… portal API token"}
