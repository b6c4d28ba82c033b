from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Gateway data path"

    def configuration_problems(self) -> list[str]:
        from proxy.config import gateway_config

        return gateway_config.problems()
