"""Writing a pack: files stream into one zip while their SHA-256, size and row count are taken.

Only one zip member can be open for writing at a time, so populations that are filled in the
same pass over the audit log (calls, denials, masking actions next to all records) go to spooled
side files first (`SideCsv`, on disk, not in memory) and are copied in when the pass ends.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Spreadsheets execute cells that start with these; prefix them so they stay text (CWE-1236).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CHARS = frozenset("=+-@\t\r")
CHUNK = 1 << 20
_LEVEL_ATTR = "compress_level" if "compress_level" in zipfile.ZipInfo.__slots__ else "_compresslevel"


def safe_cell(value: Any) -> Any:
    """A CSV cell as written: None -> "", formula-looking strings prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the pack as the manifest lists it."""

    path: str
    sha256: str
    bytes: int
    rows: int | None = None  # data rows of a CSV (header excluded)
    media_type: str = "text/csv"


class _HashingWriter(io.RawIOBase):
    """Bytes pass through to `target` while their SHA-256 and count are taken."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)


_QUOTE = re.compile(r'[",\r\n]')
_FORMULA_AFTER_COMMA = re.compile(r",[=+\-@\t\r]")


def _field(value: Any) -> str:
    """One CSV field, RFC 4180 (as csv.QUOTE_MINIMAL writes it): quoted only when needed."""
    if value is None:
        return ""
    if value.__class__ is str:
        if _QUOTE.search(value):
            return '"' + value.replace('"', '""') + '"'
        return value  # type: ignore[no-any-return]
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if _QUOTE.search(text) else text


class CsvSink:
    """CSV rows into a binary stream, hashed and counted on the way.

    RFC 4180 with CRLF line ends, UTF-8. Written by hand rather than with the csv module, whose
    per-character writer costs ten times as much: at a million records that is the budget.
    `text_columns`: indices of the only columns that can hold text from outside (the rest are
    numbers, timestamps, hashes, fixed vocabularies), checked for formula prefixes on the hot
    path; None checks every cell. None values are written as empty cells.
    """

    def __init__(self, target: IO[bytes], columns: Sequence[str],
                 text_columns: Sequence[int] | None = None) -> None:
        self._out = _HashingWriter(target)
        self._lines: list[str] = []
        self._text_columns = tuple(text_columns) if text_columns is not None else None
        self._lines.append(",".join(_field(c) for c in columns))
        self.rows = 0

    def write(self, row: Sequence[Any]) -> None:
        if self._text_columns is None:
            row = [safe_cell(v) for v in row]
        # Fast path: join as is. Only if the line shows a field starting like a formula, a quote,
        # a line break or a comma too many is any field looked at on its own.
        parts = [v if v.__class__ is str else ("" if v is None else str(v)) for v in row]
        line = ",".join(parts)
        if self._text_columns and (line[:1] in _FORMULA_CHARS
                                   or _FORMULA_AFTER_COMMA.search(line)):
            for i in self._text_columns:
                v = row[i]
                if v.__class__ is str and v and v[0] in _FORMULA_CHARS:
                    parts[i] = "'" + v
            line = ",".join(parts)
        if '"' in line or "\n" in line or "\r" in line or line.count(",") != len(parts) - 1:
            line = ",".join([_field(v) for v in parts])
        self._lines.append(line)
        self.rows += 1
        if len(self._lines) >= 2000:
            self._flush()

    def _flush(self) -> None:
        if self._lines:
            self._lines.append("")
            self._out.write("\r\n".join(self._lines).encode("utf-8"))
            self._lines.clear()

    def close(self) -> tuple[str, int]:
        """Flush; returns (sha256, bytes). The target stays open."""
        self._flush()
        return self._out.digest.hexdigest(), self._out.size


class SideCsv:
    """A CSV written to a temporary file now and added to the pack later."""

    def __init__(self, directory: Path, path: str, columns: Sequence[str],
                 text_columns: Sequence[int] | None = None) -> None:
        self.path = path
        self._file = tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".csv")  # noqa: SIM115
        self.local = Path(self._file.name)
        self.sink = CsvSink(self._file, columns, text_columns)
        self.sha256 = ""
        self.size = 0

    def write(self, row: Sequence[Any]) -> None:
        self.sink.write(row)

    @property
    def rows(self) -> int:
        return self.sink.rows

    def close(self) -> None:
        self.sha256, self.size = self.sink.close()
        self._file.close()


class PackArchive:
    """The zip being built. Every member added here is listed (with its hash) in `entries`."""

    def __init__(self, path: Path, compresslevel: int = 1) -> None:
        self.path = path
        self.compresslevel = compresslevel
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                                   compresslevel=compresslevel, allowZip64=True)
        self.entries: list[FileEntry] = []
        self._names: set[str] = set()

    def _member(self, name: str) -> IO[bytes]:
        if name in self._names:
            raise ValueError(f"{name} is already in the pack")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        setattr(info, _LEVEL_ATTR, self.compresslevel)
        info.external_attr = 0o644 << 16
        return self.zip.open(info, "w", force_zip64=True)

    def write_csv(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                  text_columns: Sequence[int] | None = None) -> FileEntry:
        with self._member(name) as member:
            sink = CsvSink(member, columns, text_columns)
            for row in rows:
                sink.write(row)
            sha, size = sink.close()
        entry = FileEntry(name, sha, size, sink.rows)
        self.entries.append(entry)
        return entry

    def write_bytes(self, name: str, data: bytes, media_type: str, *, listed: bool = True) -> FileEntry:
        with self._member(name) as member:
            member.write(data)
        entry = FileEntry(name, hashlib.sha256(data).hexdigest(), len(data), None, media_type)
        if listed:
            self.entries.append(entry)
        return entry

    def add_side_csv(self, side: SideCsv) -> FileEntry:
        with self._member(side.path) as member, side.local.open("rb") as source:
            shutil.copyfileobj(source, member, CHUNK)
        side.local.unlink()
        entry = FileEntry(side.path, side.sha256, side.size, side.rows)
        self.entries.append(entry)
        return entry

    def add_file(self, name: str, local: Path, media_type: str) -> FileEntry:
        digest = hashlib.sha256()
        size = 0
        with self._member(name) as member, local.open("rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                member.write(chunk)
        entry = FileEntry(name, digest.hexdigest(), size, None, media_type)
        self.entries.append(entry)
        return entry

    def close(self) -> None:
        self.zip.close()
