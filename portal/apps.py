from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"
    default_auto_field = "django.db.models.BigAutoField"

    def configuration_problems(self) -> list[str]:
        from portal.config import portal_config

        return portal_config.problems()

    def ready(self) -> None:
        from portal import signals  # noqa: F401  (sign-in events are audited)
