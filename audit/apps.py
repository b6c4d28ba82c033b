from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def configuration_problems(self) -> list[str]:
        from audit.config import audit_config

        return audit_config.problems()
