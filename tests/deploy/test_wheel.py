"""The wheel carries everything the server needs: templates and static files are package data,
so a non-editable install (the container image) renders the portal and collects static files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Run from the unpacked wheel, never from the checkout: the code and data must come from it.
PROBE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
import django
django.setup()
import wardgate
assert wardgate.__file__.startswith(sys.argv[1]), wardgate.__file__
from django.core.management import call_command
from django.template.loader import get_template
from django.test import Client
call_command("check")
call_command("migrate", interactive=False, verbosity=0)
for name in ("base.html", "portal/home.html", "reports/evidence.html",
             "allauth/layouts/base.html"):
    origin = get_template(name).origin.name
    assert origin.startswith(sys.argv[1]), origin
page = Client().get("/accounts/login/", HTTP_HOST="localhost")
assert page.status_code == 200 and b"<form" in page.content, page.status_code
call_command("collectstatic", interactive=False, verbosity=0)
assert os.path.exists(os.path.join(os.environ["WARDGATE_VAR_DIR"], "static/portal/htmx.min.js"))
print("wheel ok")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, timeout=600)
    (built,) = out.glob("wardgate-*.whl")
    return built


def test_the_wheel_holds_templates_static_files_and_the_console_script(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    templates = {n for n in names if n.startswith("wardgate/templates/") and n.endswith(".html")}
    in_checkout = {str(p.relative_to(ROOT)) for p in (ROOT / "wardgate/templates").rglob("*.html")}
    assert templates == in_checkout and len(templates) > 20
    assert "portal/static/portal/htmx.min.js" in names
    assert "reports/nist_controls.json" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "wardgate = wardgate.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_renders_the_portal(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "DJANGO_"))}
    (tmp_path / "var").mkdir()
    env |= {"PYTHONPATH": str(site), "WARDGATE_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run([sys.executable, "-c", PROBE, str(site)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "wheel ok" in done.stdout
