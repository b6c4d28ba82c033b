"""PII classes of upstream columns, per connection: glob rules over "project.dataset.table.column"
plus BigQuery policy tags ("policytag:<tag resource name glob>" keys)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

POLICY_TAG_PREFIX = "policytag:"


@dataclass(frozen=True, slots=True)
class ColumnClassifier:
    column_rules: tuple[tuple[re.Pattern[str], str], ...]
    tag_rules: tuple[tuple[re.Pattern[str], str], ...]

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
        found = {cls for rx, cls in self.column_rules if rx.fullmatch(key)}
        for tag in policy_tags.get(key, ()):
            found.update(cls for rx, cls in self.tag_rules if rx.fullmatch(tag))
        return frozenset(found)
