"""NIST SP 800-53 rev5 control text for the packs.

Read at build time from `../shared/nist/controls.json` (beside the repository) when it is there,
else from the copy shipped in this package (`reports/nist_controls.json`, the controls the catalog
maps), so an installed package works without the shared folder. The pack records which file it
used and its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

BUNDLED = Path(__file__).resolve().parent / "nist_controls.json"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "nist" / "controls.json"


_MARKDOWN_LINK = re.compile(r"\[([^\[\]]*)\]\((?:#|https?://)[^)\s]*\)")


def plain_text(text: str) -> str:
    """NIST's prose as text: markdown links (`[AU-2a.](#au-2_smt.a)`) become their label."""
    previous = None
    while previous != text:
        previous, text = text, _MARKDOWN_LINK.sub(r"\1", text)
    return text


@dataclass(frozen=True, slots=True)
class NistControl:
    id: str  # OSCAL id, e.g. "ac-2" or "au-3.3"
    label: str  # "AC-2", "AU-3(3)"
    title: str
    statement: str
    baselines: tuple[str, ...]
    objectives: tuple[tuple[str, str], ...]  # (label, prose) from SP 800-53A
    methods: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class NistCatalog:
    controls: dict[str, NistControl]  # by label
    source: str  # which file was read
    sha256: str
    version: str

    def get(self, label: str) -> NistControl:
        try:
            return self.controls[label]
        except KeyError:
            raise KeyError(f"{label} is not in the NIST control text ({self.source})") from None


def _control(data: dict[str, Any]) -> NistControl:
    return NistControl(
        id=data["id"],
        label=data["label"],
        title=data["title"],
        statement=data.get("statement") or "",
        baselines=tuple(data.get("baselines") or ()),
        objectives=tuple((o.get("label", ""), o.get("prose", "").strip())
                         for o in data.get("assessment_objectives_53A") or ()),
        methods=dict(data.get("assessment_methods_53A") or {}),
    )


@lru_cache(maxsize=4)
def nist_catalog_load(path: Path | None = None) -> NistCatalog:
    """The control text: `path`, else the shared file when present, else the bundled copy."""
    chosen = path or (SHARED if SHARED.is_file() else BUNDLED)
    raw = chosen.read_bytes()
    data = json.loads(raw)
    controls = {c["label"]: _control(c) for c in data["controls"]}
    source = data.get("source", {})
    shown = (f"shared/nist/{chosen.name}" if chosen == SHARED
             else f"reports/{chosen.name}" if chosen == BUNDLED else str(chosen))
    return NistCatalog(controls, shown, hashlib.sha256(raw).hexdigest(),
                       str(source.get("catalog_version", "unknown")))
