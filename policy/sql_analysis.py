"""Parse and resolve one BigQuery SQL text into a frozen, policy-ready analysis.

The gateway denies whatever this module cannot fully resolve, so every ambiguity raises
:class:`SqlAnalysisError` instead of guessing ("fail closed").

Name normalisation (all names are lowercased; BigQuery column names are case-insensitive and
we deliberately treat project/dataset/table names the same way so one policy pattern covers
every spelling):

* base tables are ``project.dataset.table``; ``ds.t`` gets ``default_project``, a bare ``t``
  gets ``default_project.default_dataset`` (no default dataset -> error);
* wildcard tables keep their star: ``project.dataset.events_*``;
* INFORMATION_SCHEMA views are ``project.<dataset-or-region>.information_schema.<view>``, e.g.
  ``p.ds.information_schema.tables`` or ``p.region-us.information_schema.jobs``;
* CTE names, UNNEST aliases and subquery aliases are never tables.

``schema`` maps ``project.dataset.table`` -> ``{column: bigquery_type}``. It may also carry
INFORMATION_SCHEMA views, either per container (``p.ds.information_schema.tables``) or for every
container (``information_schema.tables``); views without an entry are accepted but their
columns cannot be expanded by ``*`` or row references.

Text hygiene, before any parsing: a leading BOM is dropped; NUL, other control characters and
invisible/odd Unicode (zero-width, bidi, U+2028, non-ASCII spaces) are rejected anywhere. The
sqlglot tokens are then cross-checked against an independent lexer written from BigQuery's
lexical rules, so a comment, string or quoted identifier that the two could delimit differently
(the classic way to hide a second statement) is rejected as ``sql.ambiguous_syntax``.

Limits (all fail closed): only SELECT statements get ``columns``/``outputs``; other statements
(and statements sqlglot can only keep as opaque text: CALL, EXECUTE IMMEDIATE, BEGIN...END,
IF/LOOP...) contribute their class and best-effort tables, so a role must not allow those
classes where column rules matter. PIVOT/UNPIVOT, table-valued functions, dotted (persistent or
remote) functions, top-level SELECT AS STRUCT/VALUE and ``*`` shapes whose column order sqlglot
gets wrong are refused.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.qualify_columns import qualify_columns, validate_qualify_columns
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope
from sqlglot.schema import MappingSchema
from sqlglot.tokens import Token, TokenType

__all__ = [
    "STATEMENT_CLASSES",
    "ColumnRef",
    "ColumnUse",
    "OutputColumn",
    "SqlAnalysis",
    "SqlAnalysisError",
    "SqlAnalyzer",
    "analyze_sql",
    "analyze_sql_cached",
    "referenced_datasets",
]

STATEMENT_CLASSES: Final = frozenset(
    {
        "select",
        "insert",
        "update",
        "delete",
        "merge",
        "truncate",
        "ddl",
        "temp_function",
        "export_data",
        "call",
        "execute_immediate",
        "script",
        "load_data",
        "other",
    }
)

# BigQuery rejects query texts above 1 MiB; anything larger is not worth parsing.
MAX_SQL_LENGTH: Final = 1024 * 1024

_DIALECT: Final = Dialect.get_or_raise("bigquery")

# Used as the default dataset when the caller has none: any bare table name that qualify_tables
# stamps with it was unqualified in the query, which we must reject.
_NO_DATASET: Final = "\x00no_default_dataset"

_INFO_SCHEMA_PREFIX: Final = "information_schema."

# Dotted function namespaces that are BigQuery built-ins. Anything else with a dot is a
# persistent UDF / remote function, which may read other tables or ship rows to an external
# endpoint, so it is rejected.
_BUILTIN_FUNCTION_NAMESPACES: Final = frozenset(
    {"safe", "net", "hll_count", "kll_quantiles", "keys", "aead", "ml"}
)

_LITERAL_TOKENS: Final = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)

# ASCII controls other than TAB/LF/CR: the tokenizer and BigQuery may disagree on them.
_ASCII_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Non-ASCII categories that can hide or split text (zero-width, bidi, line separators, odd
# spaces, private/unassigned code points). A comment "ending" at U+2028 for one parser but not
# the other is exactly how a second statement gets smuggled past us.
_BAD_UNICODE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs"})
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*m")
_WS_RE: Final = re.compile(r"\s+")

# An independent lexer written from BigQuery's lexical rules (GoogleSQL), used only to check
# that sqlglot's tokenizer put every string, quoted identifier and comment boundary in the same
# place. Where the two disagree (e.g. `a\`` is one identifier for BigQuery but ends at the
# backslash for sqlglot) a statement could hide inside what we believe is a literal.
_BQ_LEXER: Final = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<comment>(?:--|\#)[^\r\n]* | /\*[\s\S]*?\*/)
    | (?P<literal>
        (?:[rR][bB]?|[bB][rR]?)?
        (?: '''(?:[^'\\]|\\[\s\S]|'(?!''))*'''
          | \"\"\"(?:[^"\\]|\\[\s\S]|"(?!""))*\"\"\"
          | '(?:[^'\\\r\n]|\\[^\r\n])*'
          | "(?:[^"\\\r\n]|\\[^\r\n])*"
        )
        | `(?:[^`\\\r\n]|\\[^\r\n])*`
      )
    | (?P<word>\w+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)
_QUOTE_CHARS: Final = frozenset("'\"`")
_COMMAND_TOKENS: Final = frozenset(_DIALECT.tokenizer_class.COMMANDS)
_COMMAND_PREFIX_TOKENS: Final = frozenset(_DIALECT.tokenizer_class.COMMAND_PREFIX_TOKENS)

_SCRIPT_KEYWORDS: Final = frozenset(
    {
        "BEGIN",
        "END",
        "IF",
        "ELSEIF",
        "ELSE",
        "LOOP",
        "WHILE",
        "REPEAT",
        "FOR",
        "LEAVE",
        "BREAK",
        "CONTINUE",
        "ITERATE",
        "RETURN",
        "RAISE",
        "CASE",
        "EXCEPTION",
        "DECLARE",
        "SET",
        "COMMIT",
        "ROLLBACK",
    }
)
_COMMAND_CLASSES: Final = {
    "CALL": "call",
    "EXECUTE": "execute_immediate",
    "EXPORT": "export_data",
    "LOAD": "load_data",
    "CREATE": "ddl",
    "ALTER": "ddl",
    "DROP": "ddl",
    "UNDROP": "ddl",
    "INSERT": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
    "MERGE": "merge",
    "TRUNCATE": "truncate",
}


class SqlAnalysisError(Exception):
    """The SQL could not be fully analysed; ``code`` is machine-readable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[SqlAnalysisError], tuple[str, str]]:
        return (SqlAnalysisError, (self.code, self.detail))


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """A base-table column; ``table`` is ``project.dataset.table`` (lowercase)."""

    table: str
    column: str


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """One result column and the base columns its value is derived from."""

    name: str
    sources: frozenset[ColumnRef]
    direct: bool


@dataclass(frozen=True, slots=True)
class ColumnUse:
    """Base columns whose values a statement computes on, compares, groups or orders by.

    A plain projection (through aliases, CTEs, subqueries and ``UNION ALL``) and the argument
    of a counting aggregate (``COUNT``, ``COUNT(DISTINCT ...)``, ``APPROX_COUNT_DISTINCT``) are
    not uses: their values leave unchanged (and are masked on the result) or do not leave at
    all. Everything else is, and the masking policy decides whether it may stand: a masked
    value must never be computed on, or the answer could depend on the raw value.

    ``context`` is one of ``expression``, ``filter``, ``join``, ``grouping``, ``ordering``,
    ``window``, ``limit``, ``unnest``, ``set_operation`` (a comparing set operation),
    ``set_operation_mix`` (``UNION ALL`` of different columns or values; ``branches`` holds
    each branch's sources and ``pure`` whether every branch is a plain column) and
    ``equality_lookup`` (``column = literal`` / ``column IN (literals)``).
    """

    sources: frozenset[ColumnRef]
    context: str
    snippet: str
    branches: tuple[frozenset[ColumnRef], ...] = ()
    pure: bool = True


@dataclass(frozen=True, slots=True)
class SqlAnalysis:
    """Everything the policy needs to know about one SQL text.

    ``columns`` and ``outputs`` are computed for SELECT statements only; other statements
    contribute their class and (best effort) their tables.
    """

    statement_classes: tuple[str, ...]
    tables: frozenset[str]
    columns: frozenset[ColumnRef]
    outputs: tuple[OutputColumn, ...]
    normalized_sql: str
    fingerprint: str
    uses: tuple[ColumnUse, ...] = ()


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def analyze_sql(
    sql: str,
    *,
    default_project: str,
    default_dataset: str | None = None,
    schema: Mapping[str, Mapping[str, str]] | None = None,
) -> SqlAnalysis:
    """Analyse ``sql``; raise :class:`SqlAnalysisError` for anything not fully resolvable."""
    prepared = _PreparedSchema(schema) if schema is not None else None
    return _analyze(sql, default_project, default_dataset, prepared)


class SqlAnalyzer:
    """Thread-safe bounded LRU cache in front of :func:`analyze_sql`.

    Keyed on ``(sql, default_project, default_dataset, schema_version)``. ``schema_version``
    must change whenever the schema content changes, and must not be shared by two different
    schemas that use the same cache (pass e.g. ``(connection_id, version)``). Failures are
    cached too, so a hostile text is parsed once, not once per retry. Bounded both by entry
    count and by the characters held (SQL text + normalized SQL), so a flood of large texts
    cannot grow the process without limit.
    """

    def __init__(self, maxsize: int = 4096, max_chars: int = 32 * 1024 * 1024) -> None:
        if maxsize < 1 or max_chars < 1:
            raise ValueError("maxsize and max_chars must be >= 1")
        self._maxsize = maxsize
        self._max_chars = max_chars
        self._chars = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[
            tuple[Hashable, ...], tuple[SqlAnalysis | tuple[str, str], int]
        ] = OrderedDict()
        # Prepared schema per version, so wildcard prefix lookups are indexed once per version.
        self._schemas: dict[Hashable, tuple[Mapping[str, Mapping[str, str]], _PreparedSchema]] = {}
        self.hits = 0
        self.misses = 0

    def analyze(
        self,
        sql: str,
        *,
        default_project: str,
        default_dataset: str | None = None,
        schema: Mapping[str, Mapping[str, str]] | None = None,
        schema_version: Hashable = 0,
    ) -> SqlAnalysis:
        """Cached :func:`analyze_sql`."""
        key = (sql, default_project, default_dataset, schema_version, schema is None)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if entry is not None:
            cached = entry[0]
            if isinstance(cached, SqlAnalysis):
                return cached
            # Fresh exception per raise: sharing one instance across threads mixes tracebacks.
            raise SqlAnalysisError(*cached)

        prepared = self._prepared(schema, schema_version) if schema is not None else None
        result: SqlAnalysis | tuple[str, str]
        try:
            result = _analyze(sql, default_project, default_dataset, prepared)
        except SqlAnalysisError as err:
            result = (err.code, err.detail)
        size = len(sql) + (len(result.normalized_sql) if isinstance(result, SqlAnalysis) else 0)
        if size <= self._max_chars:
            with self._lock:
                previous = self._entries.pop(key, None)
                if previous is not None:
                    self._chars -= previous[1]
                self._entries[key] = (result, size)
                self._chars += size
                while len(self._entries) > self._maxsize or self._chars > self._max_chars:
                    _, (_, evicted) = self._entries.popitem(last=False)
                    self._chars -= evicted
        if isinstance(result, SqlAnalysis):
            return result
        raise SqlAnalysisError(*result)

    def clear(self) -> None:
        """Drop every cached analysis and prepared schema."""
        with self._lock:
            self._entries.clear()
            self._schemas.clear()
            self._chars = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _prepared(
        self, schema: Mapping[str, Mapping[str, str]], version: Hashable
    ) -> _PreparedSchema:
        with self._lock:
            entry = self._schemas.get(version)
            if entry is not None and entry[0] is schema:
                return entry[1]
            prepared = _PreparedSchema(schema)
            if len(self._schemas) >= 8:  # a handful of live versions is plenty
                self._schemas.clear()
            self._schemas[version] = (schema, prepared)
            return prepared


_DEFAULT_ANALYZER: Final = SqlAnalyzer(4096)


def analyze_sql_cached(
    sql: str,
    *,
    default_project: str,
    default_dataset: str | None = None,
    schema: Mapping[str, Mapping[str, str]] | None = None,
    schema_version: Hashable = 0,
) -> SqlAnalysis:
    """:func:`analyze_sql` behind a process-wide LRU of 4096 entries (see :class:`SqlAnalyzer`)."""
    return _DEFAULT_ANALYZER.analyze(
        sql,
        default_project=default_project,
        default_dataset=default_dataset,
        schema=schema,
        schema_version=schema_version,
    )


@functools.lru_cache(maxsize=4096)
def referenced_datasets(sql: str, default_project: str,
                        default_dataset: str | None) -> frozenset[str]:
    """"project.dataset" names a statement mentions (best effort; the analyzer decides), so
    their schemas can be fetched before the analysis. Cached: a repeated statement must not be
    parsed again on the hot path."""
    out: set[str] = set()
    try:
        statements = sqlglot.parse(sql, read="bigquery")
    except SqlglotError:
        return frozenset()
    for statement in statements:
        if statement is None:
            continue
        for table in statement.find_all(exp.Table):
            db, catalog = table.db, table.catalog
            name = table.name
            if "." in name and not db:  # `project.dataset.table` quoted as one identifier
                parts = name.split(".")
                if len(parts) == 3:
                    catalog, db = parts[0], parts[1]
                elif len(parts) == 2:
                    db = parts[0]
            if db:
                out.add(f"{(catalog or default_project)}.{db}".lower())
            elif default_dataset:
                out.add(f"{default_project}.{default_dataset}".lower())
    return frozenset(out)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


class _PreparedSchema:
    """The caller's schema plus a lazily built sorted key index for wildcard prefix lookups."""

    __slots__ = ("_mapping", "_sorted_keys")

    def __init__(self, mapping: Mapping[str, Mapping[str, str]]) -> None:
        self._mapping = mapping
        self._sorted_keys: list[str] | None = None

    def get(self, fq: str) -> Mapping[str, str] | None:
        return self._mapping.get(fq)

    def with_prefix(self, prefix: str) -> list[str]:
        keys = self._sorted_keys
        if keys is None:
            keys = self._sorted_keys = sorted(self._mapping)
        out: list[str] = []
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            if not keys[i].startswith(prefix):
                break
            out.append(keys[i])
        return out


def _analyze(
    sql: str,
    default_project: str,
    default_dataset: str | None,
    schema: _PreparedSchema | None,
) -> SqlAnalysis:
    if not isinstance(default_project, str) or not default_project.strip():
        raise SqlAnalysisError("sql.config", "default_project must be a non-empty string")
    project = default_project.strip().lower()
    dataset = default_dataset.strip().lower() if default_dataset else None

    text = _precheck(sql)
    statements, opaque = _parse(text)
    classes = tuple(_classify(stmt) for stmt in statements)
    if opaque and all(cls == "select" for cls in classes):
        # Defensive: opaque text must come from a statement the policy can deny by class.
        raise SqlAnalysisError("sql.ambiguous_syntax", "unparsed statement text")

    # Render before analysis: the analysis path lowercases and qualifies the tree in place.
    try:
        parts = [_DIALECT.generate(stmt, copy=True, comments=False) for stmt in statements]
    except (SqlglotError, RecursionError) as err:
        raise SqlAnalysisError("sql.parse_error", _clean(err)) from None
    normalized = "; ".join(parts)
    fingerprint = _fingerprint(normalized)

    tables: set[str] = set()
    columns: set[ColumnRef] = set()
    outputs: tuple[OutputColumn, ...] = ()
    uses: list[ColumnUse] = []
    for stmt, cls in zip(statements, classes, strict=True):
        if cls == "select":
            result = _QueryAnalysis(stmt, project, dataset, schema).run()
            tables |= result.tables
            columns |= result.columns
            outputs = result.outputs
            uses.extend(result.uses)
        else:
            tables |= _best_effort_tables(stmt, project, dataset)
            outputs = ()

    return SqlAnalysis(
        statement_classes=classes,
        tables=frozenset(tables),
        columns=frozenset(columns),
        outputs=outputs,
        normalized_sql=normalized,
        fingerprint=fingerprint,
        uses=tuple(uses),
    )


def _clean(err: BaseException) -> str:
    text = _ANSI_RE.sub("", str(err)).strip() or type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _precheck(sql: object) -> str:
    if not isinstance(sql, str):
        raise SqlAnalysisError("sql.parse_error", "SQL must be a string")
    # A leading BOM is an encoding artefact, harmless to drop; anywhere else it is rejected.
    if sql.startswith("\ufeff"):
        sql = sql[1:]
    if len(sql) > MAX_SQL_LENGTH:
        raise SqlAnalysisError("sql.too_long", f"SQL text exceeds {MAX_SQL_LENGTH} characters")
    if "\x00" in sql:
        raise SqlAnalysisError("sql.invalid_character", "SQL contains a NUL character")
    match = _ASCII_CONTROL_RE.search(sql)
    if match:
        raise SqlAnalysisError(
            "sql.invalid_character", f"SQL contains control character U+{ord(match.group()):04X}"
        )
    if not sql.isascii():
        # Iterate distinct characters only: cheap even for long non-ASCII literals.
        for ch in set(sql):
            if ord(ch) > 0x7F and unicodedata.category(ch) in _BAD_UNICODE_CATEGORIES:
                raise SqlAnalysisError(
                    "sql.invalid_character",
                    f"SQL contains disallowed character U+{ord(ch):04X} "
                    f"({unicodedata.name(ch, 'unnamed')})",
                )
    if not sql.strip():
        raise SqlAnalysisError("sql.empty", "SQL text is empty")
    return sql


def _parse(sql: str) -> tuple[list[exp.Expr], bool]:
    """Statements (empty ones dropped) and whether part of the text was opaque to lexing."""
    try:
        tokens = _DIALECT.tokenize(sql)
        opaque = _check_lexing(sql, tokens)
        parsed = _DIALECT.parser().parse(tokens, sql)
    except (ParseError, TokenError) as err:
        raise SqlAnalysisError("sql.parse_error", _clean(err)) from None
    except RecursionError:
        raise SqlAnalysisError("sql.parse_error", "SQL is nested too deeply") from None
    except SqlglotError as err:
        raise SqlAnalysisError("sql.parse_error", _clean(err)) from None
    # Empty statements (";;" or a comment followed by ";") parse to None / exp.Semicolon.
    statements = [
        stmt for stmt in parsed if stmt is not None and not isinstance(stmt, exp.Semicolon)
    ]
    if not statements:
        raise SqlAnalysisError("sql.empty", "SQL text contains no statement")
    return statements, opaque


def _check_lexing(sql: str, tokens: list[Token]) -> bool:
    """Reject text whose literal/comment boundaries sqlglot and BigQuery could disagree on.

    Both lexers must agree on the exact span of every string literal and quoted identifier,
    and on the remaining code characters (comments and whitespace excluded). sqlglot swallows
    statements it cannot parse (CALL, EXECUTE IMMEDIATE, BEGIN ... END, IF/LOOP ...) into one
    opaque token; the comparison stops there and True is returned, so the caller can insist
    that such a text carries a non-SELECT class (denied unless a role allows it).
    """
    cutoff = len(sql)
    opaque = False
    prev: Token | None = None
    for index, tok in enumerate(tokens):
        if tok.token_type in _COMMAND_TOKENS and (
            prev is None or prev.token_type in _COMMAND_PREFIX_TOKENS
        ):
            cutoff = tok.start
            tokens = tokens[:index]
            opaque = True
            break
        prev = tok

    ours: set[tuple[int, int]] = set()
    code: list[str] = []
    pos = 0
    match_at = _BQ_LEXER.match
    while pos < cutoff:
        m = match_at(sql, pos)
        if m is None:  # pragma: no cover - the "other" branch matches any character
            break
        kind = m.lastgroup
        end = m.end()
        if kind == "literal":
            ours.add((pos, end - 1))
        elif kind == "word":
            code.append(m.group())
        elif kind == "other":
            char = m.group()
            if char in _QUOTE_CHARS or sql.startswith("/*", pos):
                raise SqlAnalysisError(
                    "sql.parse_error", f"unterminated literal or comment at offset {pos}"
                )
            code.append(char)
        pos = end

    theirs: set[tuple[int, int]] = set()
    their_code: list[str] = []
    for tok in tokens:
        # Type-agnostic: a token is quoted iff its source text ends in a quote character.
        if tok.end > tok.start and sql[tok.end] in _QUOTE_CHARS:
            theirs.add((tok.start, tok.end))
        else:
            their_code.append(sql[tok.start : tok.end + 1])
    if ours != theirs or "".join(code) != _WS_RE.sub("", "".join(their_code)):
        raise SqlAnalysisError(
            "sql.ambiguous_syntax",
            "string, identifier or comment boundaries are ambiguous "
            "(e.g. a backslash escape inside a `quoted identifier`)",
        )
    return opaque


def _fingerprint(normalized: str) -> str:
    """sha256 of ``normalized`` with every literal token replaced by ``?``."""
    try:
        tokens = _DIALECT.tokenize(normalized)
    except SqlglotError:  # pragma: no cover - our own rendering always tokenizes
        return hashlib.sha256(normalized.encode()).hexdigest()
    pieces: list[str] = []
    pos = 0
    for tok in tokens:
        if tok.token_type in _LITERAL_TOKENS:
            pieces.append(normalized[pos : tok.start])
            pieces.append("?")
            pos = tok.end + 1
    pieces.append(normalized[pos:])
    return hashlib.sha256("".join(pieces).encode()).hexdigest()


def _classify(stmt: exp.Expr) -> str:
    if isinstance(stmt, exp.Select):
        # SELECT ... INTO is a table write in disguise.
        return "other" if stmt.args.get("into") else "select"
    if isinstance(stmt, exp.SetOperation):
        return "select"
    if isinstance(stmt, exp.Subquery):
        inner = stmt.unnest()
        return _classify(inner) if inner is not stmt else "other"
    if isinstance(stmt, exp.Insert):
        return "insert"
    if isinstance(stmt, exp.Update):
        return "update"
    if isinstance(stmt, exp.Delete):
        return "delete"
    if isinstance(stmt, exp.Merge):
        return "merge"
    if isinstance(stmt, exp.TruncateTable):
        return "truncate"
    if isinstance(stmt, exp.Create):
        kind = str(stmt.args.get("kind") or "").upper()
        props = stmt.args.get("properties")
        temporary = props is not None and props.find(exp.TemporaryProperty) is not None
        return "temp_function" if kind == "FUNCTION" and temporary else "ddl"
    if isinstance(stmt, (exp.Alter, exp.Drop, exp.Comment)):
        return "ddl"
    if isinstance(stmt, exp.Export):
        return "export_data"
    if isinstance(stmt, exp.LoadData):
        return "load_data"
    if isinstance(stmt, exp.Execute):
        return "execute_immediate"
    if isinstance(
        stmt,
        (
            exp.Declare,
            exp.Set,
            exp.Transaction,
            exp.Commit,
            exp.Rollback,
            exp.EndStatement,
            exp.IfBlock,
            exp.WhileBlock,
        ),
    ):
        return "script"
    if isinstance(stmt, exp.Command):
        keyword = str(stmt.this or "").strip().upper()
        if keyword in _COMMAND_CLASSES:
            return _COMMAND_CLASSES[keyword]
        return "script" if keyword in _SCRIPT_KEYWORDS else "other"
    return "other"


def _best_effort_tables(stmt: exp.Expr, project: str, dataset: str | None) -> set[str]:
    """Tables named by a non-SELECT statement; never raises (the policy denies by class)."""
    out: set[str] = set()
    try:
        cte_names = {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue
            if isinstance(table.parent, exp.UserDefinedFunction):
                continue  # the name of a function being created, not a table
            name = table.name.lower()
            db = table.db.lower()
            if not db:
                if name in cte_names or not dataset:
                    continue
                db = dataset
            out.add(f"{table.catalog.lower() or project}.{db}.{name}")
    except Exception:  # noqa: BLE001 - best effort by contract
        return out
    return out


# --------------------------------------------------------------------------------------------
# SELECT analysis
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Out:
    name: str
    sources: frozenset[ColumnRef]
    direct: bool


@dataclass(frozen=True, slots=True)
class _QueryResult:
    tables: frozenset[str]
    columns: frozenset[ColumnRef]
    outputs: tuple[OutputColumn, ...]
    uses: tuple[ColumnUse, ...]


_EMPTY: Final[frozenset[ColumnRef]] = frozenset()

# Aggregates whose result reveals nothing of the values they count.
_COUNTING: Final = (exp.Count, exp.ApproxDistinct)
# Query clauses, nearest first, that name the context of a use.
_CLAUSE_CONTEXTS: Final = (
    (exp.Where, "filter"),
    (exp.Having, "filter"),
    (exp.Qualify, "filter"),
    (exp.Group, "grouping"),
    (exp.Window, "window"),
    (exp.Order, "ordering"),
    (exp.Limit, "limit"),
    (exp.Offset, "limit"),
    (exp.Unnest, "unnest"),
)
_VALUE_LITERALS: Final = (exp.Literal, exp.Parameter, exp.Placeholder)


def _is_counted(node: exp.Expr) -> bool:
    """Whether ``node`` is the whole argument of a counting aggregate."""
    parent = node.parent
    if isinstance(parent, exp.Distinct):
        return isinstance(parent.parent, exp.Count) and len(parent.expressions) == 1
    return isinstance(parent, _COUNTING) and node.arg_key == "this"


def _is_literal_value(node: exp.Expr | None) -> bool:
    while isinstance(node, (exp.Neg, exp.Paren)):
        node = node.this
    return isinstance(node, _VALUE_LITERALS)


def _use_context(node: exp.Expr, direct: bool) -> str | None:
    """Where a value is used, or None for a plain projection, a counted argument, a NULL test
    or an EXISTS (none of which computes on the value)."""
    parent = node.parent
    if isinstance(parent, exp.Alias) and isinstance(parent.parent, exp.Select) \
            and parent.arg_key == "expressions":
        return None
    if isinstance(parent, exp.Select) and node.arg_key == "expressions":
        return None
    if _is_counted(node) or isinstance(parent, exp.Exists):
        return None
    if isinstance(parent, exp.Is) and isinstance(parent.expression, exp.Null):
        return None
    if direct and isinstance(parent, exp.EQ) and _is_literal_value(
            parent.expression if node.arg_key == "this" else parent.this):
        return "equality_lookup"
    if direct and isinstance(parent, exp.In) and node.arg_key == "this" \
            and not parent.args.get("query") and not parent.args.get("unnest") \
            and parent.expressions and all(_is_literal_value(e) for e in parent.expressions):
        return "equality_lookup"
    child, current = node, parent
    while current is not None and not isinstance(current, (exp.Query, exp.Subquery)):
        if isinstance(current, exp.Join):
            return "join" if child.arg_key in ("on", "using") else "expression"
        for kind, context in _CLAUSE_CONTEXTS:
            if isinstance(current, kind):
                return context
        child, current = current, current.parent
    if isinstance(current, exp.Query):
        for key, context in (("where", "filter"), ("having", "filter"), ("qualify", "filter"),
                             ("group", "grouping"), ("order", "ordering"), ("limit", "limit"),
                             ("offset", "limit")):
            if child.arg_key == key:
                return context
    return "expression"


def _snippet(node: exp.Expr) -> str:
    """The use, named for a reason: the column (or subquery) and the function or operator
    around it. Built from names, not by rendering SQL, which would cost more than the rest of
    the analysis for a statement that is then allowed."""
    if isinstance(node, exp.Column):
        name = f"{node.table}.{node.name}" if node.table else node.name
    elif isinstance(node, exp.TableColumn):
        name = node.name
    else:
        name = "(subquery)"
    parent = node.parent
    if isinstance(parent, exp.Func):
        return f"{parent.sql_name()}(... {name} ...)"
    if isinstance(parent, exp.Binary | exp.Predicate):
        op = _OPERATORS.get(type(parent), type(parent).__name__.upper())
        return f"{name} {op} ..."
    return name


_OPERATORS: Final = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<",
                     exp.LTE: "<=", exp.Like: "LIKE", exp.In: "IN", exp.DPipe: "||",
                     exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}


class _QueryAnalysis:
    """Qualify one SELECT statement once, then derive tables, columns and lineage in one walk."""

    def __init__(
        self,
        stmt: exp.Expr,
        project: str,
        dataset: str | None,
        schema: _PreparedSchema | None,
    ) -> None:
        self.stmt = stmt
        self.project = project
        self.dataset = dataset
        self.schema = schema
        # fq table name -> column names, for tables whose columns we know.
        self.table_columns: dict[str, tuple[str, ...]] = {}
        self._fq_cache: dict[int, str] = {}
        self._outputs: dict[int, tuple[_Out, ...] | None] = {}  # None = being computed
        self._resolved: dict[int, tuple[frozenset[ColumnRef], bool]] = {}
        self._unnest_cache: dict[int, frozenset[ColumnRef]] = {}
        self._scope_by_expr: dict[int, Scope] = {}
        self._set_uses: list[ColumnUse] = []
        # (select, name, context): a select-list alias that shadows a FROM column, named again
        # in GROUP BY/HAVING/QUALIFY/ORDER BY/WINDOW (see _shadowed_aliases).
        self._shadowed: list[tuple[exp.Select, str, str]] = []

    # ---- driver -------------------------------------------------------------------------

    def run(self) -> _QueryResult:
        stmt = self.stmt
        self._lowercase_and_screen()
        self._shadowed = self._shadowed_aliases()
        try:
            qualify_tables(
                stmt,
                db=exp.Identifier(this=self.dataset or _NO_DATASET, quoted=True),
                catalog=exp.Identifier(this=self.project, quoted=True),
                dialect=_DIALECT,
            )
            tables = self._collect_tables()
            mapping = self._build_schema(tables)
            row_names = self._range_variable_names()
            qualify_columns(
                stmt,
                mapping,
                expand_alias_refs=True,
                expand_stars=True,
                # Only sources without a schema entry (schema=None, or INFORMATION_SCHEMA views)
                # are inferred, and only when they are the sole unknown source of their scope.
                infer_schema=True,
            )
            for node in row_names:
                if node.table:
                    # BigQuery: a range variable takes precedence over a column of that name,
                    # so this is a whole row for BigQuery and one column for sqlglot.
                    raise SqlAnalysisError(
                        "sql.ambiguous_name",
                        f"{node.name!r} names both a column and a table in FROM; BigQuery reads "
                        f"it as the table's whole row: qualify the column ({node.table}."
                        f"{node.name}) or rename the table alias",
                    )
            validate_qualify_columns(stmt)
            scopes = traverse_scope(stmt)
        except SqlAnalysisError:
            raise
        except OptimizeError as err:
            raise SqlAnalysisError("sql.unresolved_column", _clean(err)) from None
        except RecursionError:
            raise SqlAnalysisError("sql.parse_error", "SQL is nested too deeply") from None
        except Exception as err:  # noqa: BLE001 - fail closed on any resolver surprise
            raise SqlAnalysisError("sql.analysis_failed", _clean(err)) from None
        if not scopes:
            raise SqlAnalysisError("sql.analysis_failed", "statement has no query scope")

        try:
            return self._lineage(scopes, frozenset(tables))
        except SqlAnalysisError:
            raise
        except RecursionError:
            raise SqlAnalysisError("sql.parse_error", "SQL is nested too deeply") from None
        except Exception as err:  # noqa: BLE001
            raise SqlAnalysisError("sql.analysis_failed", _clean(err)) from None

    def _lowercase_and_screen(self) -> None:
        """Lowercase identifiers in place and reject constructs we cannot analyse."""
        for node in self.stmt.walk():
            if isinstance(node, exp.Identifier):
                value = node.this
                if isinstance(value, str) and not value.islower():
                    node.set("this", value.lower())
            elif isinstance(node, exp.Table):
                if isinstance(node.this, exp.Dot):
                    raise SqlAnalysisError(
                        "sql.invalid_table_name",
                        f"invalid table name {node.sql(dialect=_DIALECT)[:80]}",
                    )
                if not isinstance(node.this, exp.Identifier):
                    # EXTERNAL_QUERY, ML.*, APPENDS, VECTOR_SEARCH, persistent TVFs...: they read
                    # data we cannot see or reach outside BigQuery. UNNEST is not an exp.Table.
                    name = node.this.sql(dialect=_DIALECT)[:80]
                    raise SqlAnalysisError(
                        "sql.table_function", f"table-valued function not allowed: {name}"
                    )
            elif isinstance(node, exp.Dot):
                if isinstance(node.expression, exp.Func):
                    namespace = node.this
                    if not (
                        isinstance(namespace, exp.Identifier)
                        and namespace.name.lower() in _BUILTIN_FUNCTION_NAMESPACES
                    ):
                        raise SqlAnalysisError(
                            "sql.function_not_allowed",
                            f"user-defined function not allowed: {node.sql(dialect=_DIALECT)[:80]}",
                        )
            elif isinstance(node, exp.Anonymous):
                if "." in node.name:
                    raise SqlAnalysisError(
                        "sql.function_not_allowed",
                        f"user-defined function not allowed: {node.name[:80]}",
                    )
            elif isinstance(node, exp.Select):
                self._screen_select(node)
            elif isinstance(node, (exp.Pivot, exp.Lateral)):
                raise SqlAnalysisError(
                    "sql.unsupported", f"{type(node).__name__.upper()} is not supported"
                )
            elif isinstance(node, (exp.DML, exp.DDL)) and node is not self.stmt:
                raise SqlAnalysisError("sql.unsupported", "data modification inside a query")

    def _screen_select(self, select: exp.Select) -> None:
        """Refuse SELECT shapes whose result columns sqlglot may list differently from BigQuery.

        Output positions feed column masking, so a wrong order is a data leak: sqlglot expands
        a bare ``*`` over base tables before subqueries/UNNEST regardless of FROM order, and
        expands ``*`` over ``UNNEST(array_of_structs)`` with an extra column.
        """
        if select.args.get("kind") and self._is_result_query(select):
            raise SqlAnalysisError(
                "sql.unsupported", "SELECT AS STRUCT/VALUE is only supported inside subqueries"
            )
        from_ = select.args.get("from_")
        if from_ is None:
            return
        items = [from_.this, *(join.this for join in select.args.get("joins") or [])]
        unnest_names: set[str] = set()
        for item in items:
            if isinstance(item, exp.Unnest):
                alias = item.args.get("alias")
                if alias is not None:
                    unnest_names.add(alias.name)
                    unnest_names.update(col.name for col in alias.columns)
        mixed = len({isinstance(item, exp.Table) for item in items}) > 1
        # BigQuery lists JOIN ... USING columns first under a bare *; sqlglot keeps them where
        # the left table has them, which would shift every column after them.
        using = any(join.args.get("using") for join in select.args.get("joins") or [])
        for projection in select.expressions:
            if isinstance(projection, exp.Star) and using:
                raise SqlAnalysisError(
                    "sql.unsupported",
                    "SELECT * over JOIN ... USING lists columns in an order we cannot "
                    "predict; list the columns or use alias.*",
                )
            if isinstance(projection, exp.Star) and (mixed or unnest_names):
                raise SqlAnalysisError(
                    "sql.unsupported",
                    "SELECT * over a mix of tables, subqueries and UNNEST is ambiguous; "
                    "list the columns or use alias.*",
                )
            if (
                isinstance(projection, exp.Column)
                and isinstance(projection.this, exp.Star)
                and projection.table in unnest_names
            ):
                raise SqlAnalysisError(
                    "sql.unsupported", "alias.* over UNNEST is not supported; list the fields"
                )

    def _is_result_query(self, node: exp.Expr) -> bool:
        """Whether ``node`` produces the statement's result rows (not a subquery)."""
        while node is not self.stmt:
            parent = node.parent
            if not isinstance(parent, (exp.SetOperation, exp.Subquery)):
                return False
            node = parent
        return True

    def _collect_tables(self) -> dict[str, tuple[str, str, str]]:
        """Base tables after qualify_tables: fq name -> (catalog, container, name)."""
        cte_names = {cte.alias_or_name for cte in self.stmt.find_all(exp.CTE)}
        tables: dict[str, tuple[str, str, str]] = {}
        for table in self.stmt.find_all(exp.Table):
            name = table.name
            db = table.db
            if not db:
                # qualify_tables stamps every real source; an unstamped name must be a CTE.
                if name in cte_names:
                    continue
                raise SqlAnalysisError("sql.unknown_table", f"cannot resolve table {name!r}")
            if db == _NO_DATASET:
                raise SqlAnalysisError(
                    "sql.unqualified_table",
                    f"table {name!r} needs a dataset (no default dataset is configured)",
                )
            if len(table.parts) != 3:
                raise SqlAnalysisError(
                    "sql.invalid_table_name", f"invalid table name {table.sql(dialect=_DIALECT)}"
                )
            if name.startswith(_INFO_SCHEMA_PREFIX):
                if name.count(".") != 1 or "*" in name:
                    raise SqlAnalysisError(
                        "sql.invalid_table_name", f"invalid INFORMATION_SCHEMA view {name!r}"
                    )
            elif "." in name or "." in db:
                # BigQuery dataset/table names never contain dots; accepting `ds`.`a.b` would
                # make "p.ds.a.b" ambiguous for the policy's glob patterns.
                raise SqlAnalysisError("sql.invalid_table_name", f"invalid table name {db}.{name}")
            elif "*" in name and (name.count("*") != 1 or not name.endswith("*")):
                raise SqlAnalysisError(
                    "sql.invalid_table_name", f"wildcard must be the last character: {name!r}"
                )
            fq = f"{table.catalog}.{db}.{name}"
            self._fq_cache[id(table)] = fq
            tables[fq] = (table.catalog, db, name)
        return tables

    def _build_schema(self, tables: Mapping[str, tuple[str, str, str]]) -> MappingSchema:
        """A MappingSchema restricted to the referenced tables (cheap, and version-free)."""
        nested: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
        schema = self.schema
        for fq, (catalog, db, name) in tables.items():
            columns: Mapping[str, str] | None = None
            if name.startswith(_INFO_SCHEMA_PREFIX):
                if schema is not None:
                    columns = schema.get(fq) or schema.get(name)
            elif name.endswith("*"):
                if schema is not None:
                    matches = schema.with_prefix(fq[:-1])
                    if not matches:
                        raise SqlAnalysisError(
                            "sql.unknown_table", f"wildcard table {fq} matches no known table"
                        )
                    merged: dict[str, str] = {}
                    for key in matches:
                        for col, typ in (schema.get(key) or {}).items():
                            merged.setdefault(col.lower(), typ)
                    columns = merged
            elif schema is not None:
                columns = schema.get(fq)
                if columns is None:
                    raise SqlAnalysisError("sql.unknown_table", f"unknown table {fq}")
            if columns is None:
                continue
            lowered = {str(col).lower(): str(typ) for col, typ in columns.items()}
            self.table_columns[fq] = tuple(lowered)
            nested.setdefault(catalog, {}).setdefault(db, {})[name] = lowered
        return MappingSchema(nested, dialect=_DIALECT, normalize=False)

    # ---- lineage ------------------------------------------------------------------------

    def _lineage(self, scopes: list[Scope], tables: frozenset[str]) -> _QueryResult:
        self._scope_by_expr = {id(scope.expression): scope for scope in scopes}
        refs: set[ColumnRef] = set()
        done: set[int] = set()

        # Post-order: a column is first met in its own scope, resolved there (walking up to
        # outer scopes for correlated references) and skipped when re-listed by its parent.
        for scope in scopes:
            for column in scope.columns:
                if id(column) not in done:
                    done.add(id(column))
                    if self._is_alias_reference(scope, column):
                        continue  # ORDER BY <output alias> on a set operation
                    refs |= self._resolve(scope, column)[0]
            for row_ref in scope.table_columns:
                if id(row_ref) not in done:
                    done.add(id(row_ref))
                    refs |= self._resolve(scope, row_ref)[0]

        # Catch-all: every column-like node must have been resolved, be a pseudo-column, or be
        # a reference to a select alias. Anything else means we missed a data path.
        for node in self.stmt.walk():
            if isinstance(node, exp.Star):
                # Only COUNT(*) may keep a star; an unexpanded SELECT * / t.* / s.* means we do
                # not know which columns are read.
                if not isinstance(node.parent, exp.Count):
                    raise SqlAnalysisError(
                        "sql.unresolved_star",
                        f"cannot expand {node.parent.sql(dialect=_DIALECT)[:80]!r}"
                        if isinstance(node.parent, (exp.Column, exp.Dot))
                        else "cannot expand '*' (table schema unknown)",
                    )
            elif isinstance(node, (exp.Column, exp.TableColumn)) and id(node) not in done:
                if isinstance(node.this, exp.Star):
                    continue  # reported when the walk reaches the star itself
                scope = self._enclosing_scope(node)
                if isinstance(node, exp.Pseudocolumn):
                    done.add(id(node))
                    refs |= self._resolve(scope, node)[0]
                elif not self._is_alias_reference(scope, node):
                    raise SqlAnalysisError(
                        "sql.unresolved_column",
                        f"cannot resolve column {node.sql(dialect=_DIALECT)}",
                    )

        root = scopes[-1]
        outputs = tuple(
            OutputColumn(name=out.name, sources=out.sources, direct=out.direct)
            for out in self._scope_outputs(root)
        )
        for out in outputs:
            refs |= out.sources
        shadowed = self._shadow_uses()
        for use in shadowed:
            refs |= use.sources  # BigQuery may read the hidden column: denied columns see it
        return _QueryResult(tables=tables, columns=frozenset(refs), outputs=outputs,
                            uses=(*shadowed, *self._uses(scopes)))

    # ---- uses: where column values are computed on (see ColumnUse) ------------------------

    def _range_variable_names(self) -> list[exp.Column]:
        """Unqualified names that are also a range variable (a table or subquery alias) of
        their own SELECT or of one enclosing it (a correlated name); run checks whether
        sqlglot read them as a column."""
        found: list[exp.Column] = []
        own: dict[int, set[str]] = {}
        for select in self.stmt.find_all(exp.Select):
            from_ = select.args.get("from_")
            items = [from_.this] if from_ is not None else []
            items += [join.this for join in select.args.get("joins") or []]
            own[id(select)] = {item.alias_or_name.lower() for item in items
                               if not isinstance(item, exp.Unnest) and item.alias_or_name}
        for node in self.stmt.find_all(exp.Column):
            if node.table:
                continue
            select = node.find_ancestor(exp.Select)
            while select is not None:
                if node.name in own.get(id(select), ()):
                    found.append(node)
                    break
                select = select.find_ancestor(exp.Select)
        return found

    def _shadowed_aliases(self) -> list[tuple[exp.Select, str, str]]:
        """Unqualified names in GROUP BY, HAVING, QUALIFY, ORDER BY and WINDOW that are also
        select-list aliases of another value. sqlglot reads them as the alias; BigQuery reads
        some of them (e.g. inside an aggregate in HAVING) as the FROM column of that name, so
        both are counted as used (see _shadow_uses)."""
        found: list[tuple[exp.Select, str, str]] = []
        for select in self.stmt.find_all(exp.Select):
            aliases = {
                proj.alias.lower() for proj in select.expressions
                if isinstance(proj, exp.Alias) and proj.alias
                and not (isinstance(proj.this, exp.Column) and proj.this.name == proj.alias)
            }
            if not aliases:
                continue
            for key in ("group", "having", "qualify", "order", "windows"):
                arg = select.args.get(key)
                for clause in arg if isinstance(arg, list) else [arg]:
                    if not isinstance(clause, exp.Expr):
                        continue
                    for node in clause.walk():
                        if isinstance(node, exp.Column) and not node.table \
                                and node.name in aliases:
                            context = _use_context(node, False) or "expression"
                            found.append((select, node.name, context))
        return found

    def _shadow_uses(self) -> list[ColumnUse]:
        uses: list[ColumnUse] = []
        for select, name, context in self._shadowed:
            scope = self._scope_by_expr.get(id(select))
            if scope is None:
                raise SqlAnalysisError("sql.unsupported", "unresolvable aliased query")
            sources: frozenset[ColumnRef] = _EMPTY
            for source in scope.sources.values():
                if isinstance(source, exp.Table):
                    fq = self._fq(source)
                    if name in self.table_columns.get(fq, ()):
                        sources |= {ColumnRef(fq, name)}
                elif isinstance(source.expression, exp.Unnest):
                    sources |= self._unnest_sources(source)
                else:
                    for out in self._scope_outputs(source):
                        if out.name == name:
                            sources |= out.sources
            if sources:
                uses.append(ColumnUse(sources, context, f"{name} (an alias that hides a column)"))
        return uses

    def _uses(self, scopes: list[Scope]) -> tuple[ColumnUse, ...]:
        uses: list[ColumnUse] = list(self._set_uses)
        for node in self.stmt.walk():
            if isinstance(node, exp.Join) and str(node.args.get("method") or "").upper() == "NATURAL":
                raise SqlAnalysisError(
                    "sql.unsupported",
                    "NATURAL JOIN compares columns implicitly; name the join columns with ON",
                )
            if isinstance(node, (exp.Column, exp.TableColumn)):
                if isinstance(node.this, exp.Star):
                    continue
                resolved = self._resolved.get(id(node))
                if resolved is None:
                    sources, direct = self._alias_sources(node), False
                else:
                    sources, direct = resolved
                    direct = direct and isinstance(node, exp.Column)
                if sources:
                    self._add_use(uses, node, sources, direct)
            elif isinstance(node, exp.Select) and node.args.get("distinct"):
                # SELECT DISTINCT groups by every output: which rows come back, and in what
                # order (hash order, then a LIMIT cuts it), depends on the raw values.
                scope = self._scope_by_expr.get(id(node))
                if scope is None:
                    raise SqlAnalysisError("sql.unsupported", "unresolvable SELECT DISTINCT")
                grouped = _EMPTY.union(*(o.sources for o in self._scope_outputs(scope)))
                if grouped:
                    uses.append(ColumnUse(grouped, "grouping", "SELECT DISTINCT"))
            elif isinstance(node, exp.Group) and node.args.get("all"):
                select = node.parent
                if isinstance(select, exp.Select):
                    scope = self._scope_by_expr.get(id(select))
                    if scope is not None:
                        grouped = _EMPTY.union(*(o.sources for o in self._scope_outputs(scope)))
                        if grouped:
                            uses.append(ColumnUse(grouped, "grouping", "GROUP BY ALL"))
        for scope in scopes:
            if not scope.is_subquery:
                continue
            query = scope.expression
            holder = query.parent if isinstance(query.parent, exp.Subquery) else query
            sources = _EMPTY.union(*(o.sources for o in self._scope_outputs(scope)))
            if sources:
                self._add_use(uses, holder, sources, False)
        return tuple(uses)

    def _add_use(self, uses: list[ColumnUse], node: exp.Expr, sources: frozenset[ColumnRef],
                 direct: bool) -> None:
        context = _use_context(node, direct)
        if context is not None:
            uses.append(ColumnUse(sources, context, _snippet(node)))

    def _alias_sources(self, node: exp.Expr) -> frozenset[ColumnRef]:
        """Sources of a reference to an output of its own query (ORDER BY alias, GROUP BY 1)."""
        if not isinstance(node, exp.Column):
            return _EMPTY
        try:
            scope = self._enclosing_scope(node)
        except SqlAnalysisError:
            return _EMPTY
        return _EMPTY.union(
            *(o.sources for o in self._scope_outputs(scope) if o.name == node.name)
        )

    def _enclosing_scope(self, node: exp.Expr) -> Scope:
        parent = node.parent
        while parent is not None:
            scope = self._scope_by_expr.get(id(parent))
            if scope is not None:
                return scope
            parent = parent.parent
        raise SqlAnalysisError(
            "sql.unresolved_column", f"column outside any query: {node.sql(dialect=_DIALECT)}"
        )

    @staticmethod
    def _is_alias_reference(scope: Scope, node: exp.Expr) -> bool:
        if not isinstance(node, exp.Column) or node.table:
            return False
        query = scope.expression
        return isinstance(query, exp.Query) and node.name in query.named_selects

    def _fq(self, table: exp.Table) -> str:
        fq = self._fq_cache.get(id(table))
        if fq is None:
            fq = f"{table.catalog}.{table.db}.{table.name}"
            self._fq_cache[id(table)] = fq
        return fq

    @staticmethod
    def _lookup_source(scope: Scope, name: str) -> exp.Table | Scope | None:
        current: Scope | None = scope
        while current is not None:
            source = current.sources.get(name)
            if source is not None:
                return source
            current = current.parent
        return None

    def _resolve(self, scope: Scope, node: exp.Expr) -> tuple[frozenset[ColumnRef], bool]:
        """Base columns behind one column-like node, and whether it is a bare column."""
        cached = self._resolved.get(id(node))
        if cached is not None:
            return cached
        result = self._resolve_uncached(scope, node)
        self._resolved[id(node)] = result
        return result

    def _resolve_uncached(self, scope: Scope, node: exp.Expr) -> tuple[frozenset[ColumnRef], bool]:
        if isinstance(node, exp.TableColumn):
            # A range variable used as a value (TO_JSON_STRING(c), SELECT c): the whole row.
            source = self._lookup_source(scope, node.name)
            if source is None:
                raise SqlAnalysisError("sql.unresolved_column", f"unknown row {node.name!r}")
            return self._row_sources(source), False

        if not isinstance(node, exp.Column):
            raise SqlAnalysisError("sql.unsupported", f"unexpected node {type(node).__name__}")
        table = node.table
        name = node.name
        if isinstance(node, exp.Pseudocolumn):
            return self._pseudo_sources(scope, table, name), True

        if not table:
            raise SqlAnalysisError("sql.unresolved_column", f"cannot resolve column {name!r}")
        source = self._lookup_source(scope, table)
        if source is None:
            raise SqlAnalysisError("sql.unresolved_column", f"cannot resolve column {table}.{name}")
        if isinstance(source, exp.Table):
            fq = self._fq(source)
            if fq not in self.table_columns and self._lookup_source(scope, name) is not None:
                # Without a schema, "c" in "SELECT TO_JSON_STRING(c) FROM t AS c" is guessed to
                # be column c.c; it may be the whole row, so refuse to guess.
                raise SqlAnalysisError(
                    "sql.unresolved_column",
                    f"{name!r} may be a row reference; a schema is required to resolve it",
                )
            return frozenset({ColumnRef(fq, name)}), True
        expression = source.expression
        if isinstance(expression, exp.Unnest):
            offset = expression.args.get("offset")
            if isinstance(offset, exp.Expr) and offset.name == name:
                return _EMPTY, False
            return self._unnest_sources(source), False
        if isinstance(expression, (exp.Select, exp.SetOperation)):
            matches = [out for out in self._scope_outputs(source) if out.name == name]
            if not matches:
                raise SqlAnalysisError(
                    "sql.unresolved_column", f"cannot resolve column {table}.{name}"
                )
            sources: frozenset[ColumnRef] = _EMPTY.union(*(m.sources for m in matches))
            return sources, all(m.direct for m in matches)
        raise SqlAnalysisError("sql.unsupported", f"unsupported source for column {table}.{name}")

    def _pseudo_sources(self, scope: Scope, table: str, name: str) -> frozenset[ColumnRef]:
        if table:
            source = self._lookup_source(scope, table)
            if not isinstance(source, exp.Table):
                raise SqlAnalysisError(
                    "sql.unresolved_column", f"cannot resolve pseudo-column {table}.{name}"
                )
            return frozenset({ColumnRef(self._fq(source), name)})
        # Unqualified _TABLE_SUFFIX/_PARTITIONTIME: attribute to every base table in scope.
        refs = frozenset(
            ColumnRef(self._fq(source), name)
            for source in scope.sources.values()
            if isinstance(source, exp.Table)
        )
        if not refs:
            raise SqlAnalysisError(
                "sql.unresolved_column", f"cannot resolve pseudo-column {name!r}"
            )
        return refs

    def _row_sources(self, source: exp.Table | Scope) -> frozenset[ColumnRef]:
        if isinstance(source, exp.Table):
            fq = self._fq(source)
            names = self.table_columns.get(fq)
            if names is None:
                raise SqlAnalysisError(
                    "sql.unresolved_column",
                    f"row reference to {fq} needs its schema to resolve",
                )
            return frozenset(ColumnRef(fq, col) for col in names)
        if isinstance(source.expression, exp.Unnest):
            return self._unnest_sources(source)
        outs = self._scope_outputs(source)
        return _EMPTY.union(*(out.sources for out in outs))

    def _unnest_sources(self, scope: Scope) -> frozenset[ColumnRef]:
        cached = self._unnest_cache.get(id(scope))
        if cached is None:
            unnest = scope.expression
            cached = _EMPTY.union(*(self._expr_sources(scope, arg) for arg in unnest.expressions))
            self._unnest_cache[id(scope)] = cached
        return cached

    def _expr_sources(self, scope: Scope, node: exp.Expr) -> frozenset[ColumnRef]:
        found: set[ColumnRef] = set()
        for sub in walk_in_scope(node):
            if isinstance(sub, (exp.Column, exp.TableColumn)):
                if isinstance(sub, exp.Column) and isinstance(sub.this, exp.Star):
                    continue
                if _is_counted(sub):
                    # A count reveals nothing of the values counted: it carries no class. The
                    # column is still resolved, so tables and denied columns stay checked.
                    self._resolve(scope, sub)
                    continue
                found |= self._resolve(scope, sub)[0]
            elif sub is not node and isinstance(sub, (exp.Select, exp.SetOperation)):
                child = self._scope_by_expr.get(id(sub))
                if child is None:
                    raise SqlAnalysisError("sql.unsupported", "unresolvable nested query")
                for out in self._scope_outputs(child):
                    found |= out.sources
        return frozenset(found)

    def _scope_outputs(self, scope: Scope) -> tuple[_Out, ...]:
        key = id(scope)
        if key in self._outputs:
            cached = self._outputs[key]
            if cached is None:
                raise SqlAnalysisError("sql.unsupported", "cyclic query reference")
            return cached
        self._outputs[key] = None
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            result = self._set_operation_outputs(scope, expression)
        elif isinstance(expression, exp.Select):
            result = tuple(self._projection(scope, proj) for proj in expression.selects)
        elif isinstance(expression, exp.Unnest):
            result = (_Out("", self._unnest_sources(scope), False),)
        else:
            raise SqlAnalysisError(
                "sql.unsupported", f"unsupported query type {type(expression).__name__}"
            )
        self._outputs[key] = result
        return result

    def _projection(self, scope: Scope, projection: exp.Expr) -> _Out:
        name = projection.alias_or_name.lower()
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(inner, (exp.Column, exp.TableColumn)) and not isinstance(
            inner.this, exp.Star
        ):
            sources, direct = self._resolve(scope, inner)
            return _Out(name, sources, direct)
        return _Out(name, self._expr_sources(scope, inner), False)

    def _set_use(self, comparing: bool, snippet: str, branches: tuple[_Out | None, ...]) -> None:
        """Record a set operation over columns: a comparing one (DISTINCT, INTERSECT, EXCEPT)
        compares values; UNION ALL of anything but the same plain columns mixes classified
        values with others (a later DISTINCT or COUNT(DISTINCT) would compare them)."""
        sources = _EMPTY.union(*(b.sources for b in branches if b is not None))
        if not sources:
            return
        if comparing:
            self._set_uses.append(ColumnUse(sources, "set_operation", snippet))
            return
        pure = all(b is not None and b.direct for b in branches)
        each = tuple(b.sources if b is not None else _EMPTY for b in branches)
        if pure and len(set(each)) == 1:
            return
        self._set_uses.append(ColumnUse(sources, "set_operation_mix", snippet, each, pure))

    def _set_operation_outputs(
        self, scope: Scope, expression: exp.SetOperation
    ) -> tuple[_Out, ...]:
        if len(scope.union_scopes) != 2:
            raise SqlAnalysisError("sql.unsupported", "malformed set operation")
        left = self._scope_outputs(scope.union_scopes[0])
        right = self._scope_outputs(scope.union_scopes[1])
        by_name = bool(expression.args.get("by_name") or expression.args.get("on"))
        by_name = by_name or bool(expression.args.get("side") or expression.args.get("kind"))
        comparing = not isinstance(expression, exp.Union) or bool(expression.args.get("distinct"))
        snippet = f"{type(expression).__name__.upper()}{' DISTINCT' if comparing else ' ALL'}"
        if not by_name:
            if len(left) != len(right):
                raise SqlAnalysisError(
                    "sql.unresolved_column", "set operation branches differ in column count"
                )
            for lo, ro in zip(left, right, strict=True):
                self._set_use(comparing, snippet, (lo, ro))
            return tuple(
                _Out(lo.name, lo.sources | ro.sources, lo.direct and ro.direct)
                for lo, ro in zip(left, right, strict=True)
            )
        # BY NAME / CORRESPONDING: merge per column name. Over-approximate the column set
        # (every name from either side) so no source is ever dropped.
        for name in {o.name for o in (*left, *right)}:
            branches = tuple(o for o in (*left, *right) if o.name == name)
            self._set_use(comparing, snippet, branches if len(branches) > 1 else (*branches, None))
        merged: dict[str, _Out] = {}
        for out in (*left, *right):
            prev = merged.get(out.name)
            if prev is None:
                merged[out.name] = _Out(out.name, out.sources, out.direct)
            else:
                prev.sources = prev.sources | out.sources
                prev.direct = prev.direct and out.direct
        return tuple(merged.values())
