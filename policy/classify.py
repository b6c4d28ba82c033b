"""PII classes of upstream columns, per connection: glob rules over "project.dataset.table.column"
plus BigQuery policy tags ("policytag:<tag resource name glob>" keys)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

POLICY_TAG_PREFIX = "policytag:"


@dataclass(frozen=True, slots=True)
class ColumnClassifier:
    column_rules: tuple[tuple[re.Pattern[str], str], ...]
    tag_rules: tuple[tuple[re.Pattern[str], str], ...]
    # Classes per (column, its policy tags): the masked-use check asks for the same few columns
    # on every call, and each answer otherwise costs one regex match per rule.
    _known: dict[tuple[str, tuple[str, ...]], frozenset[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def from_config(cls, data: Mapping[str, str]) -> ColumnClassifier:
        if not isinstance(data, Mapping):
            raise ValueError("column_classes must map column patterns to class names")
        columns, tags = [], []
        for pattern, pii_class in data.items():
            if not isinstance(pattern, str) or not isinstance(pii_class, str) or not pii_class:
                raise ValueError(f"column_classes: bad entry {pattern!r}: {pii_class!r}")
            if pattern.startswith(POLICY_TAG_PREFIX):
                tags.append((re.compile(fnmatch.translate(pattern[len(POLICY_TAG_PREFIX):])),
                             pii_class.lower()))
            else:
                if pattern.count(".") != 3:
                    raise ValueError(f"column_classes: {pattern!r} must look like "
                                     "project.dataset.table.column (globs allowed)")
                columns.append((re.compile(fnmatch.translate(pattern.lower())), pii_class.lower()))
        return cls(tuple(columns), tuple(tags))

    def classes_of(self, table: str, column: str,
                   policy_tags: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
        key = f"{table}.{column}".lower()
        tags = tuple(policy_tags.get(key, ()))
        known = self._known.get((key, tags))
        if known is not None:
            return known
        found = {cls for rx, cls in self.column_rules if rx.fullmatch(key)}
        for tag in tags:
            found.update(cls for rx, cls in self.tag_rules if rx.fullmatch(tag))
        if len(self._known) >= 65536:  # bounded: names come from schemas and callers' SQL
            self._known.clear()
        known = self._known[(key, tags)] = frozenset(found)
        return known
