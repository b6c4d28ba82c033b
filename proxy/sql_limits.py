"""Bounds on SQL analysis, checked before the parser runs.

Parsing and resolving a statement costs far more than its size suggests: 280 nested
subqueries (11 KB) take seconds of CPU. So before anything parses, the text must be short
enough, lex into few enough tokens and nest parentheses shallowly enough; each refusal says
which bound it met. Lexing is linear and cheap (≈1 ms per 1,000 tokens); the bounds then cap
what the parser and resolver can be made to do, and the time budget (proxy.sql_worker)
catches whatever still gets through.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.sql_analysis import SqlAnalysisError


@dataclass(frozen=True, slots=True)
class SqlLimits:
    max_chars: int = 100_000
    max_tokens: int = 10_000
    max_depth: int = 32
    budget_seconds: float = 2.0
    workers: int = 2



def _token_sets() -> tuple[frozenset, frozenset]:
    from sqlglot.tokens import TokenType

    return (frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.CASE}),
            frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.END}))


_OPENERS, _CLOSERS = _token_sets()


def check_sql_length(sql: str, limits: SqlLimits) -> None:
    if len(sql) > limits.max_chars:
        raise SqlAnalysisError("sql.too_long",
                               f"SQL longer than {limits.max_chars} characters is refused")


def check_sql_limits(sql: str, limits: SqlLimits) -> None:
    """Raise SqlAnalysisError (sql.too_long / sql.too_many_tokens / sql.too_deep) when `sql`
    is over a bound. Text the lexer rejects is left to the analysis, which refuses it too."""
    from sqlglot.errors import SqlglotError

    from policy.sql_analysis import _DIALECT

    check_sql_length(sql, limits)
    try:
        tokens = _DIALECT.tokenize(sql)
    except (SqlglotError, RecursionError):
        return
    if len(tokens) > limits.max_tokens:
        raise SqlAnalysisError("sql.too_many_tokens",
                               f"SQL with more than {limits.max_tokens} tokens is refused")
    # Parentheses, brackets and CASE ... END all nest (END also closes BEGIN blocks, which only
    # lowers the count).
    depth = deepest = 0
    for token in tokens:
        if token.token_type in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in _CLOSERS:
            depth -= 1
    if deepest > limits.max_depth:
        raise SqlAnalysisError(
            "sql.too_deep",
            f"SQL nested more than {limits.max_depth} levels deep is refused (found {deepest})")
