"""Check a :class:`~policy.sql_analysis.SqlAnalysis` against a role's SQL rules.

Patterns are shell-style globs over lowercase fully qualified names, compiled once when the
rules are built (``fnmatch.translate`` -> ``re``). Only ``*`` (any run of characters, dots
included) and ``?`` (one character) are supported; ``[...]`` classes are rejected so that the
coverage checks below stay exact.

Two deliberate departures from plain glob matching, both fail-closed:

* INFORMATION_SCHEMA views (``p.ds.information_schema.tables``) are only allowed by a pattern
  that itself spells ``information_schema`` (``demo.shop.information_schema.*``); ``demo.shop.*``
  or ``*`` never reveal metadata by accident.
* A wildcard table ``demo.shop.events_*`` is allowed only by a pattern that covers every table
  the wildcard can expand to (``demo.shop.events_*``, ``demo.shop.*``), never by a pattern for
  one concrete shard such as ``demo.shop.events_2024``. Conversely a denied column on any shard
  (``demo.shop.events_2024.payload``) denies that column through the wildcard.

Denied columns are checked against every column the query *reads* (select list, WHERE, JOIN,
GROUP BY, row references...), not only the returned ones: filtering on a secret leaks it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from policy.masking import MaskingPolicy
from policy.sql_analysis import (
    STATEMENT_CLASSES,
    ColumnRef,
    ColumnUse,
    SqlAnalysis,
    SqlAnalysisError,
)

__all__ = [
    "Reason",
    "SqlRules",
    "check_bytes",
    "check_masked_tables",
    "check_masked_uses",
    "check_sql",
    "reason_for_error",
]

_INFO_SCHEMA_MARK: Final = ".information_schema."
# Characters no valid pattern may contain: they can then only be matched by ``*`` / ``?``,
# which is what the wildcard coverage probes rely on.
_PROBE: Final = "\x01\x01\x01"
_PATTERN_FORBIDDEN_RE: Final = re.compile(r"[\s\[\]\x00-\x1f\x7f]")
_CONFIG_KEYS: Final = frozenset(
    {
        "allowed_statement_classes",
        "allow_multiple_statements",
        "allowed_tables",
        "denied_columns",
        "max_bytes_scanned",
    }
)


@dataclass(frozen=True, slots=True)
class Reason:
    """One policy violation; ``rule`` is a stable machine-readable id."""

    rule: str
    message: str
    table: str | None = None
    column: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """JSON-ready form with stable keys."""
        return {
            "rule": self.rule,
            "message": self.message,
            "table": self.table,
            "column": self.column,
        }


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    regex: re.Pattern[str]
    mentions_information_schema: bool


def _compile(text: str) -> _Pattern:
    return _Pattern(
        text=text,
        regex=re.compile(fnmatch.translate(text)),
        mentions_information_schema="information_schema" in text,
    )


@dataclass(frozen=True, slots=True)
class SqlRules:
    """A role's SQL rules. Deny by default: no allowed table pattern means no table."""

    allowed_statement_classes: frozenset[str] = frozenset({"select"})
    allow_multiple_statements: bool = False
    allowed_tables: tuple[str, ...] = ()
    denied_columns: tuple[str, ...] = ()
    max_bytes_scanned: int | None = None
    _table_patterns: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False, default=())
    _column_patterns: tuple[_Pattern, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        classes = _validate_classes(self.allowed_statement_classes)
        tables = _validate_patterns("allowed_tables", self.allowed_tables, min_dots=0)
        columns = _validate_patterns("denied_columns", self.denied_columns, min_dots=1)
        if not isinstance(self.allow_multiple_statements, bool):
            raise ValueError("allow_multiple_statements: must be a boolean")
        cap = self.max_bytes_scanned
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(
                f"max_bytes_scanned: must be a non-negative integer or null, got {cap!r}"
            )
        # Normalise in place (frozen dataclass, hence object.__setattr__).
        object.__setattr__(self, "allowed_statement_classes", classes)
        object.__setattr__(self, "allowed_tables", tables)
        object.__setattr__(self, "denied_columns", columns)
        object.__setattr__(self, "_table_patterns", tuple(_compile(p) for p in tables))
        object.__setattr__(self, "_column_patterns", tuple(_compile(p) for p in columns))

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> SqlRules:
        """Build rules from a plain dict (YAML/JSON policy); ValueError names the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"sql rules: expected a mapping, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in _CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"sql rules: unknown key(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(_CONFIG_KEYS))}"
            )
        kwargs: dict[str, Any] = {}
        if "allowed_statement_classes" in data:
            kwargs["allowed_statement_classes"] = frozenset(
                _string_list("allowed_statement_classes", data["allowed_statement_classes"])
            )
        if "allow_multiple_statements" in data:
            value = data["allow_multiple_statements"]
            if not isinstance(value, bool):
                raise ValueError(f"allow_multiple_statements: must be a boolean, got {value!r}")
            kwargs["allow_multiple_statements"] = value
        for key in ("allowed_tables", "denied_columns"):
            if key in data:
                kwargs[key] = tuple(_string_list(key, data[key]))
        if "max_bytes_scanned" in data:
            kwargs["max_bytes_scanned"] = data["max_bytes_scanned"]
        return cls(**kwargs)

    def table_allowed(self, table: str, home_project: str | None = None) -> bool:
        """Whether one fq table name (as produced by the analysis) is allowed.

        With ``home_project`` (the connection's project), a table in another project is
        allowed only by a pattern that names that project literally: ``*.shop.customers``
        means this connection's shop, never a look-alike table in a project the caller
        controls (filled with guesses, its tokens would be a dictionary attack on ours)."""
        is_info_schema = _INFO_SCHEMA_MARK in table
        star = table.find("*")
        project = table.split(".", 1)[0]
        foreign = home_project is not None and project != home_project.lower()
        for pattern in self._table_patterns:
            if is_info_schema and not pattern.mentions_information_schema:
                continue
            if foreign and (pattern.text.count(".") < 2
                            or pattern.text.split(".", 1)[0] != project):
                continue
            if star < 0:
                if pattern.regex.match(table):
                    return True
            elif _covers_wildcard(pattern.regex, table[:star]):
                return True
        return False

    def dataset_visible(self, dataset: str, home_project: str | None = None) -> bool:
        """Whether some table of one fq dataset (``project.dataset``) is allowed, i.e. whether
        the role may know the dataset exists and read its metadata. Foreign projects as in
        :meth:`table_allowed` (only a pattern naming that project literally)."""
        dataset = dataset.lower()
        project = dataset.split(".", 1)[0]
        foreign = home_project is not None and project != home_project.lower()
        for pattern in self._table_patterns:
            if foreign and (pattern.text.count(".") < 2
                            or pattern.text.split(".", 1)[0] != project):
                continue
            if _glob_matches_some_table(pattern.text.lower(), dataset + "."):
                return True
        return False

    def column_denied(self, ref: ColumnRef) -> bool:
        """Whether a base column matches a denied pattern (wildcard tables: any shard)."""
        return self.denied_column_pattern(ref) is not None

    def denied_column_pattern(self, ref: ColumnRef) -> str | None:
        """The first denied pattern matching ``ref``, or None."""
        table = ref.table
        star = table.find("*")
        full = f"{table}.{ref.column}"
        for pattern in self._column_patterns:
            if pattern.regex.match(full):
                return pattern.text
            if star >= 0 and _glob_matches_some_shard(pattern.text, table[:star], ref.column):
                return pattern.text
        return None


def _covers_wildcard(regex: re.Pattern[str], prefix: str) -> bool:
    # The pattern must match the wildcard spelled literally *and* arbitrary suffixes (empty,
    # digits, and characters only a glob metacharacter can match), i.e. every possible shard.
    return all(
        regex.match(candidate) is not None
        for candidate in (prefix + "*", prefix, prefix + "20240101", prefix + _PROBE)
    )


def _glob_closure(pattern: str, states: Iterable[int]) -> set[int]:
    """The NFA states reachable from ``states`` without consuming a character (a ``*`` may
    match nothing)."""
    out: set[int] = set()
    stack = list(states)
    while stack:
        i = stack.pop()
        if i in out:
            continue
        out.add(i)
        if i < len(pattern) and pattern[i] == "*":
            stack.append(i + 1)
    return out


def _glob_matches_some_shard(pattern: str, prefix: str, column: str) -> bool:
    """Whether ``pattern`` matches ``prefix + S + '.' + column`` for some string S.

    S is a shard suffix, so it never contains a dot. A tiny NFA over the glob (``*``, ``?``,
    literals): consume ``prefix``, then any dot-free string (every later pattern position not
    separated by a literal dot is reachable), then ``.column``.
    """
    size = len(pattern)

    def closure(states: Iterable[int]) -> set[int]:
        return _glob_closure(pattern, states)

    def step(states: set[int], ch: str) -> set[int]:
        nxt: set[int] = set()
        for i in states:
            if i >= size:
                continue
            tok = pattern[i]
            if tok == "*":
                nxt.add(i)
            elif tok == "?" or tok == ch:
                nxt.add(i + 1)
        return closure(nxt)

    states = closure({0})
    for ch in prefix:
        states = step(states, ch)
        if not states:
            return False
    reachable: set[int] = set()
    for start in states:
        j = start
        while True:
            reachable.add(j)
            if j >= size or pattern[j] == ".":
                break
            j += 1
    states = closure(reachable)
    for ch in "." + column:
        states = step(states, ch)
        if not states:
            return False
    return size in states


def _glob_matches_some_table(pattern: str, prefix: str) -> bool:
    """Whether ``pattern`` matches ``prefix + T`` for some non-empty dot-free table name T
    (the NFA of :func:`_glob_matches_some_shard`: consume ``prefix``, then the pattern's end
    must be reachable without a literal dot)."""
    size = len(pattern)

    def closure(states: Iterable[int]) -> set[int]:
        return _glob_closure(pattern, states)

    states = closure({0})
    for ch in prefix:
        nxt = {i + 1 if pattern[i] != "*" else i for i in states
               if i < size and pattern[i] in ("*", "?", ch)}
        states = closure(nxt)
        if not states:
            return False
    # At least one character of T, then the end, never crossing a literal dot.
    for start in states:
        rest = pattern[start:]
        if "." not in rest and (rest.strip("*") or "*" in rest):
            return True
    return False


def _string_list(key: str, value: object) -> list[str]:
    # A bare string would otherwise be iterated character by character.
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{key}: must be a list of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{key}: entries must be strings, got {item!r}")
    return items


def _validate_classes(value: object) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (set, frozenset, list, tuple)):
        raise ValueError("allowed_statement_classes: must be a set of statement classes")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or item.strip().lower() not in STATEMENT_CLASSES:
            raise ValueError(
                f"allowed_statement_classes: unknown statement class {item!r}; "
                f"expected one of {', '.join(sorted(STATEMENT_CLASSES))}"
            )
        out.add(item.strip().lower())
    return frozenset(out)


def _validate_patterns(key: str, value: object, *, min_dots: int) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}: must be a list of glob patterns")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{key}: patterns must be non-empty strings, got {item!r}")
        text = item.strip().lower()
        if _PATTERN_FORBIDDEN_RE.search(text):
            raise ValueError(
                f"{key}: invalid pattern {item!r} (no whitespace, control characters or [...])"
            )
        if text.count(".") < min_dots:
            raise ValueError(f"{key}: pattern {item!r} must look like project.dataset.table.column")
        out.append(text)
    return tuple(out)


def check_sql(analysis: SqlAnalysis, rules: SqlRules,
              home_project: str | None = None) -> tuple[Reason, ...]:
    """Every violation of ``rules`` by ``analysis``; an empty tuple means allowed.
    ``home_project``: see :meth:`SqlRules.table_allowed`."""
    reasons: list[Reason] = []

    seen_classes: set[str] = set()
    for cls in analysis.statement_classes:
        if cls not in rules.allowed_statement_classes and cls not in seen_classes:
            seen_classes.add(cls)
            reasons.append(
                Reason(
                    "sql.statement_class",
                    f"{cls} statements are not allowed "
                    f"(allowed: {', '.join(sorted(rules.allowed_statement_classes)) or 'none'})",
                )
            )

    count = len(analysis.statement_classes)
    if count > 1 and not rules.allow_multiple_statements:
        reasons.append(
            Reason(
                "sql.multiple_statements",
                f"{count} statements submitted; only one statement per request is allowed",
            )
        )

    for table in sorted(analysis.tables):
        if not rules.table_allowed(table, home_project):
            reasons.append(
                Reason("sql.table_not_allowed", f"table {table} is not allowed", table=table)
            )

    if rules.denied_columns:
        refs: set[ColumnRef] = set(analysis.columns)
        for out in analysis.outputs:
            refs |= out.sources
        for ref in sorted(refs, key=lambda r: (r.table, r.column)):
            pattern = rules.denied_column_pattern(ref)
            if pattern is not None:
                reasons.append(
                    Reason(
                        "sql.column_denied",
                        f"column {ref.table}.{ref.column} is denied (pattern {pattern})",
                        table=ref.table,
                        column=ref.column,
                    )
                )

    return tuple(reasons)


_USE_WORDS: Final = {
    "expression": "computed on in an expression",
    "filter": "used in a filter (WHERE/HAVING/QUALIFY)",
    "join": "used in a join condition",
    "grouping": "grouped by",
    "ordering": "ordered by",
    "window": "used in a window (PARTITION BY/ORDER BY)",
    "limit": "used in LIMIT/OFFSET",
    "unnest": "unnested",
    "set_operation": "compared by a set operation (UNION DISTINCT, INTERSECT, EXCEPT)",
    "set_operation_mix": "mixed with other values by UNION ALL",
    "equality_lookup": "compared with a literal",
}


def check_masked_uses(
    analysis: SqlAnalysis,
    classes_of: Callable[[ColumnRef], frozenset[str]],
    masking: MaskingPolicy,
) -> tuple[Reason, ...]:
    """Refuse every computation over a column this role sees only masked.

    A masked value may leave only as itself (a plain projection, masked on the result) or be
    counted; anything else (expressions, filters, joins, grouping, ordering, windows, comparing
    set operations) would let the answer depend on the raw value, so the statement is refused.
    ``equality_lookups`` opts classes in to ``column = literal`` (an oracle, by choice).
    """
    reasons: list[Reason] = []
    seen: set[tuple[str, str, str]] = set()
    for use in analysis.uses:
        masked = _masked_classes(use.sources, classes_of, masking)
        if not masked or _use_allowed(use, masked, classes_of, masking):
            continue
        ref = min((r for r in use.sources if _masked_classes((r,), classes_of, masking)),
                  key=lambda r: (r.table, r.column))
        key = (ref.table, ref.column, use.context)
        if key in seen:
            continue
        seen.add(key)
        how = _USE_WORDS.get(use.context, "computed on")
        hint = (" (this role may compare it with a literal only if its masking policy lists the "
                "class in equality_lookups)" if use.context == "equality_lookup" else "")
        reasons.append(Reason(
            "sql.masked_column_use",
            f"{ref.column} ({', '.join(sorted(masked))}) is masked for your role and cannot be "
            f"{how}: {use.snippet}. Masked columns may only be selected as they are (the "
            f"result is masked) or counted with COUNT, COUNT(DISTINCT) or "
            f"APPROX_COUNT_DISTINCT{hint}",
            table=ref.table, column=ref.column,
        ))
    return tuple(reasons)


def check_masked_tables(
    analysis: SqlAnalysis,
    schema: Mapping[str, Mapping[str, str]],
    classes_of: Callable[[ColumnRef], frozenset[str]],
    masking: MaskingPolicy,
) -> tuple[Reason, ...]:
    """Statements other than SELECT (DML, DDL, scripts) are analysed by class and tables only,
    so they may not touch a table that holds a column this role sees masked: an
    ``INSERT ... SELECT REVERSE(ssn)`` would copy it out unmasked."""
    if all(cls == "select" for cls in analysis.statement_classes):
        return ()
    reasons = []
    for table in sorted(analysis.tables):
        masked = sorted({cls for col in schema.get(table, {})
                         for cls in classes_of(ColumnRef(table, col)) if masking.is_masked(cls)})
        if masked:
            reasons.append(Reason(
                "sql.masked_table_statement",
                f"table {table} holds columns masked for your role ({', '.join(masked)}); "
                "only SELECT statements may read it", table=table))
    return tuple(reasons)


def _masked_classes(sources: Iterable[ColumnRef], classes_of: Callable[[ColumnRef], frozenset[str]],
                    masking: MaskingPolicy) -> frozenset[str]:
    return frozenset(cls for ref in sources for cls in classes_of(ref) if masking.is_masked(cls))


def _use_allowed(use: ColumnUse, masked: frozenset[str],
                 classes_of: Callable[[ColumnRef], frozenset[str]],
                 masking: MaskingPolicy) -> bool:
    if use.context == "equality_lookup":
        return masked <= masking.equality_lookups
    if use.context == "set_operation_mix":
        # UNION ALL of plain columns that all carry the same masked classes only stacks
        # values of one kind; anything else would mix caller-chosen values in.
        return use.pure and len({_masked_classes(b, classes_of, masking)
                                 for b in use.branches}) == 1
    return False


def check_bytes(total_bytes_processed: int, rules: SqlRules) -> tuple[Reason, ...]:
    """Check a dry-run's ``total_bytes_processed`` against the cap; empty tuple = allowed."""
    value = total_bytes_processed
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        # An unreadable estimate cannot prove the query is under the cap.
        return (Reason("sql.bytes_cap", f"invalid bytes-processed estimate {value!r}"),)
    cap = rules.max_bytes_scanned
    if cap is not None and value > cap:
        return (
            Reason(
                "sql.bytes_cap",
                f"query would scan {value} bytes, above the cap of {cap} bytes",
            ),
        )
    return ()


def reason_for_error(err: SqlAnalysisError) -> Reason:
    """Map an analysis failure to a Reason (its code is already a ``sql.*`` rule id)."""
    return Reason(rule=err.code, message=err.detail)
