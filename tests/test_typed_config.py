"""Typed configuration: the environment read once with every problem collected, and each app's
configuration rebuilt when a setting changes (override_settings, pytest-django's `settings`)."""

from __future__ import annotations

from pathlib import Path

from django.test import override_settings

from audit.config import AuditConfig, audit_config
from portal.config import PortalConfig, portal_config
from proxy.config import GatewayConfig, gateway_config
from reports.config import ReportsConfig, reports_config
from wardgate.config import DemoConfig, demo_config
from wardgate.settings.env import Env


def test_env_collects_every_problem_and_keeps_defaults() -> None:
    env = Env({"A": "maybe", "B": "x", "C": "0", "D": "{", "E": "[1]", "F": " a, ,b "})
    assert env.flag("A", True) is True
    assert env.integer("B", 7) == 7
    assert env.integer("C", 5, minimum=1) == 0
    assert env.json_objects("D") == []
    assert env.json_objects("E") == []
    assert env.items("F", []) == ["a", "b"]
    assert env.text("MISSING", "default") == "default"
    assert env.problems == [
        "A must be one of 1/0/true/false/yes/no/on/off, got 'maybe'",
        "B must be an integer, got 'x'",
        "C must be at least 1",
        "D must be a JSON list: Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)",
        "E must be a JSON list of objects, each with a name",
    ]


def test_each_app_reads_its_typed_configuration() -> None:
    assert isinstance(audit_config(), AuditConfig)
    assert isinstance(portal_config(), PortalConfig)
    assert isinstance(reports_config(), ReportsConfig)
    assert isinstance(gateway_config(), GatewayConfig)
    assert isinstance(demo_config(), DemoConfig)
    assert audit_config() is audit_config()  # built once, not on every read


def test_typed_configuration_follows_setting_changes(settings, tmp_path: Path) -> None:
    with override_settings(WARDGATE_AUDIT_RETENTION_DAYS=3):
        assert audit_config().retention_days == 3
    assert audit_config().retention_days != 3
    settings.WARDGATE_PACK_DIR = tmp_path
    assert reports_config().pack_dir == tmp_path
    settings.WARDGATE_INCIDENT_MAX_DENIED = 2
    assert portal_config().incident_max_denied == 2
