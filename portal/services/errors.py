"""The one error a portal service raises when a rule says no.

Every service refusal derives from `ServiceError`, so the edges translate it in one place each:
the DRF exception handler (portal.api.exceptions) for the API, `service_call` / the form helpers
(portal.views._base) for the pages. Anything else a service raises is an internal error and is
left to fail closed (500), never shown as a refusal.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A rule refused the action. `message` is shown to the person who tried; `field_errors`
    names the input fields at fault (a form shows them on those fields); `code` is stable for
    API clients; `status` is the HTTP status the API answers with (a class default, or given for
    one refusal: a separation-of-duties refusal is 403, not 400)."""

    default_code = "invalid"
    status = 400
    # Set once the service has put this refusal on record (events.refusals_recorded), so an edge
    # that records refusals by status (a 403) does not record it a second time.
    recorded = False

    def __init__(self, message: str, *, field_errors: dict[str, list[str]] | None = None,
                 code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_errors: dict[str, list[str]] = dict(field_errors or {})
        self.code = code or self.default_code
        if status is not None:
            self.status = status


class InvalidServiceInput(ServiceError, ValueError):
    """A refusal of the input itself (a lifetime out of range, a missing reason). Also a
    ValueError, because callers (management commands) have always caught these as one."""

    default_code = "invalid_input"
