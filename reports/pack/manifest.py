"""The manifest (every file of a pack with its SHA-256) and its signature, and their check.

manifest.json is written last and signed as is: `manifest.sig` holds the raw 64-byte Ed25519
signature over the exact bytes of manifest.json, so it can be checked with OpenSSL alone:

    unzip -o PACK.zip manifest.json manifest.sig
    openssl pkeyutl -verify -pubin -inkey pack-public-key.pem -rawin \\
        -in manifest.json -sigfile manifest.sig
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reports.keys import key_id, signature_valid

FORMAT = "wardgate-evidence-pack/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


@dataclass(slots=True)
class PackCheck:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    key_id: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def verify_pack_file(path: Path, public_key: Ed25519PublicKey) -> PackCheck:
    """Check a pack: the signature over manifest.json, then every listed file's size and SHA-256,
    and that the zip holds nothing else (no extra, missing or duplicated member; empty directory
    entries are ignored, so a pack unzipped and re-zipped unchanged still verifies)."""
    check = PackCheck(key_id=key_id(public_key))
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        check.fail(f"not a readable zip file: {exc}")
        return check
    with archive:
        # Directory entries (what `zip -r` adds when a pack is unzipped and zipped again) are not
        # files of the pack; one that carries bytes is not a directory and is checked as a file.
        names = [info.filename for info in archive.infolist()
                 if not (info.is_dir() and info.file_size == 0)]
        duplicated = sorted(n for n, c in Counter(names).items() if c > 1)
        if duplicated:
            check.fail(f"the zip holds more than one member named {', '.join(duplicated)}")
        for required in (MANIFEST, SIGNATURE):
            if required not in names:
                check.fail(f"{required} is missing")
        if not check.ok:
            return check
        raw = archive.read(MANIFEST)
        signature = archive.read(SIGNATURE)
        if not signature_valid(public_key, raw, signature):
            check.fail(f"the signature does not match {MANIFEST} for key {check.key_id}: the "
                       "manifest was altered or the pack was signed by another key")
            return check
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            check.fail(f"{MANIFEST} is not JSON: {exc}")
            return check
        check.manifest = manifest
        if manifest.get("format") != FORMAT:
            check.fail(f"unknown manifest format {manifest.get('format')!r} (expected {FORMAT})")
            return check
        listed: dict[str, dict[str, Any]] = {}
        for item in manifest.get("files", []):
            listed[item["path"]] = item
        for name in names:
            if name not in listed and name not in (MANIFEST, SIGNATURE):
                check.fail(f"{name} is in the zip but not in the manifest")
        for name, item in listed.items():
            if name not in names:
                check.fail(f"{name} is listed in the manifest but missing from the zip")
                continue
            digest = hashlib.sha256()
            size = 0
            with archive.open(name) as member:
                while chunk := member.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            if digest.hexdigest() != item.get("sha256"):
                check.fail(f"{name} was altered: its SHA-256 is {digest.hexdigest()}, the "
                           f"manifest says {item.get('sha256')}")
            elif size != item.get("bytes"):
                check.fail(f"{name} has {size} bytes, the manifest says {item.get('bytes')}")
            check.files_checked += 1
    return check
