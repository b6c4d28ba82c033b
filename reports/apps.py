from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Evidence reports"

    def configuration_problems(self) -> list[str]:
        from reports.config import reports_config

        return reports_config.problems()

    def ready(self) -> None:
        # Retention purges only what exported evidence packs cover; the audit app asks through
        # this hook so that it imports no other app.
        from audit.retention import evidence_pack_model_register
        from reports.models import EvidencePack

        evidence_pack_model_register(EvidencePack)
