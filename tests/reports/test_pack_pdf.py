"""The PDF renders (pdftoppm, as CI runs it) and says what it must: controls, period, statuses;
and the pack verifies with OpenSSL alone, as README.txt in the pack documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.catalog import ALL_LABELS
from tests.reports.conftest import build_pack, require_tool

pytestmark = pytest.mark.django_db


def check_pdf(pdf: Path, workdir: Path, controls: tuple[str, ...], period: str) -> str:
    """Render every page to PNG and extract the text; returns the text."""
    pdftoppm, pdfinfo, pdftotext = (require_tool(t) for t in ("pdftoppm", "pdfinfo", "pdftotext"))
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    subprocess.run([pdftoppm, "-r", "50", "-png", str(pdf), str(workdir / "page")], check=True,
                   capture_output=True)
    pngs = sorted(workdir.glob("page-*.png"))
    assert len(pngs) == pages >= 5
    assert all(p.stat().st_size > 2000 for p in pngs)  # not blank
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Evidence pack" in text and period in text
    for label in controls:
        assert re.search(rf"(?<![\w(-]){re.escape(label)}(?![\w(])", text), label
    for heading in ("Summary", "Audit chain verification", "Figure 1", "Figure 2",
                    "Sampled records", "Evidence files"):
        assert heading in text
    return text


def test_pdf_renders_with_every_control(small_log, system_state, pack_dir, open_pack,
                                        tmp_path) -> None:
    zipped = open_pack(build_pack())
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(zipped.read("report.pdf"))
    text = check_pdf(pdf, tmp_path, ALL_LABELS, "2026-03-01 to 2026-03-31")
    assert "evidence present" in text and "gaps found" in text
    assert "VERIFIED" in text


def test_pack_verifies_with_openssl(small_log, pack_dir, open_pack, tmp_path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    zipped = open_pack(build_pack(controls=["AU-2"]))
    for name in ("manifest.json", "manifest.sig", "pack-public-key.pem"):
        (tmp_path / name).write_bytes(zipped.read(name))
    done = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "pack-public-key.pem", "-rawin",
         "-in", "manifest.json", "-sigfile", "manifest.sig"],
        cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout, done.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    import hashlib

    for item in manifest["files"]:
        assert hashlib.sha256(zipped.read(item["path"])).hexdigest() == item["sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest) + " ")
    tampered = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "pack-public-key.pem", "-rawin",
         "-in", "manifest.json", "-sigfile", "manifest.sig"], cwd=tmp_path, capture_output=True)
    assert tampered.returncode != 0
