"""The project's own app; its ready() is where start-up refuses a bad configuration.

django.setup() runs ready() for manage.py, the ASGI application and Celery alike. The settings
collect their own problems (wardgate.settings.STARTUP_PROBLEMS) without raising; each app's
AppConfig answers `configuration_problems()` from its typed configuration. Start-up refuses
once, listing every problem together.
"""

from __future__ import annotations

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class UnsafeSettings(ImproperlyConfigured):
    """Raised at start-up when a value cannot be read, or production mode meets a demo-only
    value; the message lists every problem."""


def startup_problems() -> list[str]:
    """The settings' problems, then every installed app's, each listed once."""
    problems = list(getattr(settings, "STARTUP_PROBLEMS", []))
    for app_config in apps.get_app_configs():
        problems_of = getattr(app_config, "configuration_problems", None)
        if problems_of is not None:
            problems += problems_of()
    return list(dict.fromkeys(problems))


class WardgateConfig(AppConfig):
    name = "wardgate"
    verbose_name = "Wardgate"

    def configuration_problems(self) -> list[str]:
        from wardgate.config import demo_config, serve_config

        return demo_config.problems() + serve_config.problems()

    def ready(self) -> None:
        problems = startup_problems()
        if problems:
            production = getattr(settings, "PRODUCTION", False)
            raise UnsafeSettings(
                f"Refusing to start{' in production mode' if production else ''}:\n- "
                + "\n- ".join(problems)
            )
