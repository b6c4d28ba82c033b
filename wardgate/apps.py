from django.apps import AppConfig


class WardgateConfig(AppConfig):
    name = "wardgate"
    verbose_name = "Wardgate"
