"""Typed configuration: each app reads its own variables from the environment once, every
problem collected (start-up lists them together), and tests replace values explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.config import AuditConfig, audit_config
from portal.config import PortalConfig, portal_config
from proxy.config import GatewayConfig, gateway_config
from reports.config import ReportsConfig, reports_config
from wardgate.config import DemoConfig, ServeConfig, demo_config
from wardgate.env import Env
from wardgate.typed_config import configured


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


def test_tests_replace_values_explicitly_and_get_the_old_ones_back(configure,
                                                                    tmp_path: Path) -> None:
    before = audit_config()
    with configured(audit_config, retention_days=3) as changed:
        assert audit_config() is changed and audit_config().retention_days == 3
    assert audit_config() is before
    configure(reports_config, pack_dir=tmp_path)
    configure(portal_config, incident_max_denied=2)
    assert reports_config().pack_dir == tmp_path and portal_config().incident_max_denied == 2
    with pytest.raises(TypeError):
        configure(portal_config, no_such_field=1)


def production(**values: str) -> Env:
    return Env({"WARDGATE_MODE": "production", **values})


def test_each_app_reads_its_own_variables_and_notes_what_is_wrong(tmp_path: Path) -> None:
    env = Env({"WARDGATE_VAR_DIR": str(tmp_path), "WARDGATE_GATEWAY_MAX_BODY_BYTES": "2048",
               "WARDGATE_SQL_MAX_DEPTH": "deep",
               "WARDGATE_OIDC_ISSUER": "https://idp.example", "WARDGATE_SERVE_ONLY": "both",
               "WARDGATE_AUDIT_RETENTION_DAYS": "0", "WARDGATE_PACK_MONTHLY": "maybe",
               "WARDGATE_SSO_GROUP_MAP": "idp-eng=engineer,junk"})
    gateway = GatewayConfig.from_env(env)
    assert gateway.max_body_bytes == 2048 and gateway.sql_limits.max_depth == 32
    assert gateway.oidc is None
    assert PortalConfig.from_env(env).sso_group_map == {"idp-eng": "engineer"}
    assert AuditConfig.from_env(env).retention_days == 0
    assert ReportsConfig.from_env(env).monthly is True
    assert ServeConfig.from_env(env).only == ""
    assert env.problems == [
        "WARDGATE_OIDC_JWKS_URL is required when WARDGATE_OIDC_ISSUER is set",
        "WARDGATE_SQL_MAX_DEPTH must be an integer, got 'deep'",
        "WARDGATE_AUDIT_RETENTION_DAYS must be at least 1",
        "WARDGATE_PACK_MONTHLY must be one of 1/0/true/false/yes/no/on/off, got 'maybe'",
        "WARDGATE_SERVE_ONLY must be 'gateway', 'portal' or empty, got 'both'",
    ]


def test_production_checks_live_with_the_values_they_check() -> None:
    env = production()
    GatewayConfig.from_env(env)
    PortalConfig.from_env(env)
    AuditConfig.from_env(env)
    ReportsConfig.from_env(env)
    text = "\n".join(env.problems)
    for name in ("WARDGATE_TOKEN_HMAC_KEY", "WARDGATE_FIELD_ENCRYPTION_KEY",
                 "WARDGATE_AUDIT_CHAIN_KEY", "WARDGATE_CHECKPOINT_SIGNING_KEY",
                 "WARDGATE_CHECKPOINT_EXPORT", "WARDGATE_PACK_SIGNING_KEY",
                 "WARDGATE_PACK_ORGANISATION"):
        assert name in text, name
    metrics = production(WARDGATE_METRICS_ENABLED="1", WARDGATE_METRICS_TOKEN="short")
    assert GatewayConfig.from_env(metrics).metrics.enabled
    assert any("WARDGATE_METRICS_TOKEN" in p for p in metrics.problems)


def test_demo_defaults_need_nothing_and_differ_per_secret_and_installation(
        tmp_path: Path) -> None:
    def keys(secret: str, installation: str) -> tuple[object, ...]:
        env = Env({"WARDGATE_SECRET_KEY": secret, "WARDGATE_VAR_DIR": str(tmp_path / installation)})
        found = (GatewayConfig.from_env(env).token_key,
                 PortalConfig.from_env(env).field_encryption_key, AuditConfig.from_env(env).chain_key)
        assert env.problems == [] and all(found) and len(set(found)) == 3
        return found

    one = keys("one", "a")
    assert keys("one", "a") == one  # the same secret and installation: the same keys
    two = keys("two", "a")
    assert two[:2] != one[:2] and two[2] == one[2]  # the chain key is the installation's
    assert keys("one", "b")[2] != one[2]


def test_demo_keys_that_cannot_be_kept_are_problems_naming_the_file_and_the_variable(
        tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.write_text("a file, not a directory")
    env = Env({"WARDGATE_VAR_DIR": str(var_dir)})
    audit, reports = AuditConfig.from_env(env), ReportsConfig.from_env(env)
    assert (audit.chain_key, audit.checkpoint_signing_key, audit.checkpoint_verify_keys,
            reports.signing_key) == ("", "", (), "")
    kept = [problem for problem in env.problems if " cannot be kept in " in problem]
    assert [(problem.split(" cannot be kept in ")[0], problem.rpartition("; ")[2])
            for problem in kept] == [
        ("the demo's audit chain key", "set WARDGATE_AUDIT_CHAIN_KEY"),
        ("the demo's checkpoint signing key", "set WARDGATE_CHECKPOINT_SIGNING_KEY"),
        ("the demo's evidence pack signing key", "set WARDGATE_PACK_SIGNING_KEY"),
    ]
    assert all(f"{var_dir}/" in problem for problem in kept)


def test_start_up_lists_the_settings_and_every_apps_problems_once(settings) -> None:
    from wardgate.apps import startup_problems

    assert startup_problems() == []
    settings.STARTUP_PROBLEMS = ["WARDGATE_DEBUG must be off in production"] * 2
    assert startup_problems() == ["WARDGATE_DEBUG must be off in production"]
