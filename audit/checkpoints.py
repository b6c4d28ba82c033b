"""Signed checkpoints of the chain head, and their write-once export.

The hash chain alone proves that records fit together, not that nothing was cut off the end or
that the whole tail was not recomputed: anyone able to write the database can append valid
records (the chain is unkeyed) or rewind the head. A checkpoint is an Ed25519 signature over
(seq, hash, time) of the head, made with a key the database does not hold; exported to a
write-once location (a directory on WORM storage, or a GCS bucket with object preconditions
and, ideally, a retention policy), it lets `audit_verify` prove the log still contains, unchanged,
everything it contained when the checkpoint was made.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from .chain import canonical_datetime
from .config import audit_config
from .control_models import AuditCheckpoint
from .models import AuditChainHead
from .services import HEAD_ID, AuditEntry, append_records
from .signing import (
    checkpoint_message,
    key_id,
    load_private_key,
    load_public_key,
    public_raw,
    sign,
    signature_valid,
)

# A person's checkpoint run (`manage.py audit_checkpoint`), recorded with who ran it (AU-3).
CHECKPOINT_SIGNED_EVENT = "audit.checkpoint_signed"
CHECKPOINT_REFUSED_EVENT = "audit.checkpoint_refused"

FILE_PREFIX = "checkpoint-"
FILE_SUFFIX = ".json"
EXPORT_FORMAT = "wardgate-checkpoint"


class CheckpointError(Exception):
    """A checkpoint could not be made, exported or read."""


class CheckpointConflict(CheckpointError):
    """The write-once location already holds a different checkpoint under the same name."""


# --- keys --------------------------------------------------------------------------------------


def signing_key() -> Ed25519PrivateKey:
    return load_private_key(audit_config().checkpoint_signing_key)


def verify_keys() -> dict[str, Ed25519PublicKey]:
    """Public keys checkpoints may be signed with, by key id: the current signing key's and any
    listed in WARDGATE_CHECKPOINT_VERIFY_KEYS (keys rotated out, or a verifier without the
    private key)."""
    config = audit_config()
    keys: dict[str, Ed25519PublicKey] = {}
    if config.checkpoint_signing_key:
        public = signing_key().public_key()
        keys[key_id(public)] = public
    for text in config.checkpoint_verify_keys:
        public = load_public_key(text)
        keys[key_id(public)] = public
    return keys


# --- the checkpoint as data, wherever it was read from ----------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointData:
    seq: int
    hash: str
    at: str  # canonical ISO-8601 UTC, exactly as signed
    signature: str
    key_id: str
    source: str = "database"

    @classmethod
    def from_model(cls, checkpoint: AuditCheckpoint) -> CheckpointData:
        return cls(
            seq=checkpoint.seq,
            hash=checkpoint.hash,
            at=canonical_datetime(checkpoint.at),
            signature=checkpoint.signature,
            key_id=checkpoint.key_id,
        )

    @classmethod
    def from_json(cls, data: bytes, source: str) -> CheckpointData:
        try:
            doc = json.loads(data)
            if doc.get("format") != EXPORT_FORMAT or doc.get("version") != 1:
                raise ValueError("not a wardgate checkpoint v1 document")
            return cls(
                seq=int(doc["seq"]),
                hash=str(doc["hash"]),
                at=str(doc["at"]),
                signature=str(doc["signature"]),
                key_id=str(doc["key_id"]),
                source=source,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{source} is not a readable checkpoint: {exc}") from None

    @property
    def file_name(self) -> str:
        # Zero-padded so a listing sorts in chain order.
        return f"{FILE_PREFIX}{self.seq:020d}{FILE_SUFFIX}"

    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.hash, self.at)

    def signed_fields(self) -> tuple[int, str, str, str, str]:
        return (self.seq, self.hash, self.at, self.signature, self.key_id)

    def verify(self, keys: dict[str, Ed25519PublicKey]) -> str | None:
        """None if the signature is good, else the problem."""
        key = keys.get(self.key_id)
        if key is None:
            return (
                f"checkpoint #{self.seq} ({self.source}) is signed by unknown key {self.key_id} "
                f"(add its public key to WARDGATE_CHECKPOINT_VERIFY_KEYS if it was rotated out)"
            )
        if not signature_valid(key, self.message(), self.signature):
            return (
                f"checkpoint #{self.seq} ({self.source}) has an invalid signature: "
                f"it was forged or altered"
            )
        return None

    def to_json(self, public_key: Ed25519PublicKey | None = None) -> bytes:
        doc: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "version": 1,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
            # For humans and other tools; a verifier trusts only its own configured keys.
            "message": self.message().decode("ascii"),
        }
        if public_key is not None:
            doc["public_key"] = base64.b64encode(public_raw(public_key)).decode("ascii")
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")


# --- creating ----------------------------------------------------------------------------------


def checkpoint_create(
    *, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> AuditCheckpoint | None:
    """Sign the current chain head; returns the checkpoint (None while the log is empty).

    The records since the previous checkpoint are verified first, so a checkpoint never vouches
    for a chain that was already tampered with (and the work stays proportional to what was
    appended since). Idempotent: if the head has not moved, the existing checkpoint is returned.
    Raises CheckpointError when the chain does not verify.
    """
    # Imported here: audit.verify imports this module for the checkpoint checks.
    from .verify import verify_chain

    key = signing_key()
    keys = verify_keys()
    head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).first()
    if head is None or head.seq == 0:
        return None
    existing = AuditCheckpoint.objects.using(using).filter(seq=head.seq).first()
    if existing is not None:
        return existing

    previous = (
        AuditCheckpoint.objects.using(using).filter(seq__lt=head.seq).order_by("-seq").first()
    )
    anchor: tuple[int, str] | None = None
    if previous is not None:
        problem = CheckpointData.from_model(previous).verify(keys)
        if problem:
            raise CheckpointError(f"refusing to checkpoint on top of a bad checkpoint: {problem}")
        anchor = (previous.seq, previous.hash)
    result = verify_chain(anchor=anchor, using=using)
    if not result.ok:
        raise CheckpointError(
            f"refusing to checkpoint a broken chain: record {result.first_broken_seq}: "
            f"{result.problem}"
        )
    at = now or timezone.now()
    public = key.public_key()
    checkpoint = AuditCheckpoint(
        seq=result.head_seq,
        hash=result.head_hash,
        at=at,
        signature=sign(key, checkpoint_message(result.head_seq, result.head_hash, at)),
        key_id=key_id(public),
    )
    try:
        with transaction.atomic(using=using):
            checkpoint.save(using=using)
    except IntegrityError:
        # Another process checkpointed the same head meanwhile.
        return AuditCheckpoint.objects.using(using).get(seq=result.head_seq)
    return checkpoint


# --- write-once stores -------------------------------------------------------------------------


class CheckpointStore(Protocol):
    location: str

    def put(self, name: str, data: bytes) -> bool:
        """Write `data` under `name` once. True if written, False if the identical bytes were
        already there; CheckpointConflict if different bytes are."""
        ...

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every stored checkpoint document as (source, bytes)."""
        ...


class DirectoryStore:
    """Checkpoint files in a directory: created exclusively, never overwritten, mode 0o444.

    Each file is written complete under a temporary name, then hard-linked into place: the link
    fails if the name exists (like O_EXCL), and a crash never leaves a half-written checkpoint
    under the final name, which would then block the real one. Read-only modes do not stop
    root or the directory owner: put the directory on WORM storage (or a mount only this
    process may add files to) for real write-once guarantees.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def put(self, name: str, data: bytes) -> bool:
        if "/" in name or name.startswith("."):
            raise CheckpointError(f"bad checkpoint file name {name!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / name
        if final.exists():
            return self._same(final, data)
        temp = self.root / f".{name}.{secrets.token_hex(6)}.tmp"
        self._write_exclusive(temp, data)
        try:
            os.link(temp, final)
        except FileExistsError:
            return self._same(final, data)
        except OSError:
            # No hard links on this filesystem (some network mounts): fall back to O_EXCL.
            self._write_exclusive(final, data)
        finally:
            temp.unlink(missing_ok=True)
        self._fsync_dir()
        return True

    def items(self) -> Iterator[tuple[str, bytes]]:
        if not self.root.is_dir():
            raise CheckpointError(f"checkpoint directory {self.root} does not exist")
        for path in sorted(self.root.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
            yield str(path), path.read_bytes()

    @staticmethod
    def _write_exclusive(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(path, 0o444)  # the mode given to open() is subject to the umask

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _same(path: Path, data: bytes) -> bool:
        if path.read_bytes() == data:
            return False
        raise CheckpointConflict(
            f"{path} already exists with different content: checkpoints are write-once, "
            f"refusing to overwrite it"
        )


class GcsStore:
    """Checkpoint objects under gs://bucket/prefix, created with if_generation_match=0 so an
    existing object is never replaced. Give the bucket a retention policy (or object holds) to
    stop deletion too. Needs google-cloud-storage, which Wardgate does not install by default.
    """

    def __init__(self, uri: str, client: Any = None) -> None:
        if not uri.startswith("gs://"):
            raise CheckpointError(f"not a gs:// URI: {uri!r}")
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        if not bucket:
            raise CheckpointError(f"no bucket in {uri!r}")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.location = uri
        self._client = client

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                from google.cloud import storage  # type: ignore[attr-defined]
            except ImportError:
                raise CheckpointError(
                    f"exporting checkpoints to {self.location} needs the google-cloud-storage "
                    f"package: pip install google-cloud-storage"
                ) from None
            self._client = storage.Client()
        return self._client

    def put(self, name: str, data: bytes) -> bool:
        blob = self._get_client().bucket(self.bucket_name).blob(self.prefix + name)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=0)
        except Exception as exc:
            if not _is_precondition_failed(exc):
                raise CheckpointError(f"could not write {self.location}/{name}: {exc}") from exc
            if blob.download_as_bytes() == data:
                return False
            raise CheckpointConflict(
                f"gs://{self.bucket_name}/{self.prefix}{name} already exists with different "
                f"content: checkpoints are write-once, refusing to overwrite it"
            ) from None
        return True

    def items(self) -> Iterator[tuple[str, bytes]]:
        client = self._get_client()
        blobs = client.list_blobs(self.bucket_name, prefix=self.prefix + FILE_PREFIX)
        for blob in sorted(blobs, key=lambda b: b.name):
            if blob.name.endswith(FILE_SUFFIX):
                yield f"gs://{self.bucket_name}/{blob.name}", blob.download_as_bytes()


def _is_precondition_failed(exc: Exception) -> bool:
    try:
        from google.api_core.exceptions import PreconditionFailed
    except ImportError:  # pragma: no cover - google-api-core comes with google-cloud-bigquery
        PreconditionFailed = ()  # type: ignore[assignment]  # noqa: N806
    return isinstance(exc, PreconditionFailed) or getattr(exc, "code", None) == 412


def store_for(location: str, *, gcs_client: Any = None) -> CheckpointStore:
    location = location.strip()
    if not location:
        raise CheckpointError("no checkpoint export location (WARDGATE_CHECKPOINT_EXPORT)")
    if location.startswith("gs://"):
        return GcsStore(location, client=gcs_client)
    if "://" in location:
        raise CheckpointError(f"unsupported checkpoint location {location!r}: a directory or gs://")
    return DirectoryStore(location)


def configured_store() -> CheckpointStore | None:
    location = audit_config().checkpoint_export
    return store_for(location) if location else None


# --- exporting and reading ---------------------------------------------------------------------


def checkpoint_export(
    *, store: CheckpointStore | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[AuditCheckpoint]:
    """Copy every checkpoint not yet exported to the write-once store, oldest first; returns
    them. A checkpoint whose signature does not verify is not exported (CheckpointError)."""
    store = store or configured_store()
    if store is None:
        raise CheckpointError("no checkpoint export location (WARDGATE_CHECKPOINT_EXPORT)")
    keys = verify_keys()
    public = signing_key().public_key()
    exported: list[AuditCheckpoint] = []
    pending = AuditCheckpoint.objects.using(using).filter(exported_at__isnull=True).order_by("seq")
    for checkpoint in pending:
        data = CheckpointData.from_model(checkpoint)
        problem = data.verify(keys)
        if problem:
            raise CheckpointError(f"refusing to export: {problem}")
        signer = public if data.key_id == key_id(public) else keys.get(data.key_id)
        store.put(data.file_name, data.to_json(signer))
        checkpoint.exported_at = timezone.now()
        checkpoint.export_location = store.location[:1000]
        checkpoint.save(using=using, update_fields=["exported_at", "export_location"])
        exported.append(checkpoint)
    return exported


def load_checkpoints(
    location: str | None = None,
    *,
    store: CheckpointStore | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> tuple[list[CheckpointData], list[str]]:
    """Checkpoints from the database (no location) or from an export location, in seq order,
    and the problems met reading them (unreadable files are problems, not exceptions)."""
    if store is None and not location:
        rows = AuditCheckpoint.objects.using(using).order_by("seq")
        return [CheckpointData.from_model(row) for row in rows], []
    store = store or store_for(location or "")
    checkpoints: list[CheckpointData] = []
    problems: list[str] = []
    for source, data in store.items():
        try:
            checkpoint = CheckpointData.from_json(data, source)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if not source.endswith(checkpoint.file_name):
            problems.append(f"{source} holds checkpoint #{checkpoint.seq} under the wrong name")
        checkpoints.append(checkpoint)
    checkpoints.sort(key=lambda c: c.seq)
    return checkpoints, problems


# --- a person's run, recorded ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointRun:
    checkpoint: AuditCheckpoint | None  # the head's checkpoint (None while the log is empty)
    created: bool  # False: nothing new to sign, the existing checkpoint was returned
    exported: list[AuditCheckpoint]


def checkpoint_run(
    *,
    by: str,
    auth_method: str = "",
    user_agent: str = "",
    export: bool = False,
    store: CheckpointStore | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> CheckpointRun:
    """Sign the chain head and (with `export` or a `store`) export what is not yet exported, on
    someone's request, recorded with who it was (AU-3). The record (`audit.checkpoint_signed`)
    is appended in the same transaction as the checkpoint, just before it is signed, so the
    checkpoint it announces also vouches for it. Nothing is recorded (and nothing signed) when
    the head is already signed and nothing waits for export. A refusal (a broken chain, a bad
    earlier checkpoint, no export location) is recorded as `audit.checkpoint_refused` and raised
    again."""
    exporting = bool(export or store)
    who = {"actor": by[:150], "auth_method": auth_method, "user_agent": user_agent[:512]}
    location = store.location if store else audit_config().checkpoint_export
    head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).values_list("seq", flat=True)
    head_seq = head.first() or 0
    latest = (AuditCheckpoint.objects.using(using).order_by("-seq")
              .values_list("seq", flat=True).first())
    waiting = exporting and AuditCheckpoint.objects.using(using).filter(
        exported_at__isnull=True).exists()
    created = head_seq > 0 and (head_seq != latest or waiting)
    try:
        if created:
            with transaction.atomic(using=using):
                append_records([AuditEntry(
                    event=CHECKPOINT_SIGNED_EVENT, decision="info", **who,
                    detail={"previous_checkpoint": latest, "export": exporting,
                            "export_location": location if exporting else ""})], using=using)
                checkpoint = checkpoint_create(using=using)
        else:
            checkpoint = checkpoint_create(using=using)
        exported = checkpoint_export(store=store, using=using) if exporting else []
    except CheckpointError as exc:
        append_records([AuditEntry(
            event=CHECKPOINT_REFUSED_EVENT, decision="deny", **who,
            reasons=[{"rule": "audit.checkpoint", "message": str(exc)[:2000]}],
            detail={"export": exporting, "export_location": location if exporting else ""})],
            using=using)
        raise
    return CheckpointRun(checkpoint=checkpoint, created=created, exported=exported)
