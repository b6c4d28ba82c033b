"""The portal API's one exception handler (REST_FRAMEWORK["EXCEPTION_HANDLER"]).

A service refusal (portal.services.errors.ServiceError) becomes its status (400 unless the error
says otherwise) with one body shape:
    {"detail": message, "code": code, "errors": {field: [message, ...]},
     "non_field_errors": [message]}
(`non_field_errors` keeps the shape API clients had before the handler existed). Everything else
goes to DRF's own handler; an exception neither knows stays a 500 (fail closed).
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from portal.services.errors import ServiceError


def service_error_body(exc: ServiceError) -> dict[str, Any]:
    return {"detail": exc.message, "code": exc.code, "errors": exc.field_errors,
            "non_field_errors": [exc.message]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        set_rollback()
        response = Response(service_error_body(exc), status=exc.status)
        # Read by portal.middleware.RefusalRecordingMiddleware: a 403 the service has already
        # recorded (a separation-of-duties refusal) is not recorded again.
        response.refusal_recorded = exc.recorded
        return response
    return drf_exception_handler(exc, context)
