"""Error texts that leave the gateway (SI-19).

BigQuery and upstream MCP servers put values into their error messages ("Could not convert
string '248-48-5228' to INT64"). An error text therefore leaves — to the caller and to the audit
trail — only in one of two forms:

* when the statement read a column the caller's role sees masked: a fixed message naming the
  error class (from a closed vocabulary, never copied from the text) and the request id;
* otherwise: the text after the content detectors, as for any result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from policy.masking import MaskingPolicy, mask_free_text

__all__ = ["ErrorTextPolicy", "error_class"]

# Closed vocabulary: the class is chosen by pattern, never copied out of the text.
_ERROR_CLASSES: Final = (
    (re.compile(r"syntax error|unexpected|expected .{0,40} but got|parse error", re.I),
     "syntax_error"),
    (re.compile(r"could not (convert|cast|parse)|bad (int|double|bool|numeric|date|time)|"
                r"invalid (cast|date|time|value|number|input)|out of range|overflow|"
                r"division by zero|cannot be parsed|failed to parse", re.I), "invalid_value"),
    (re.compile(r"access denied|permission|forbidden|unauthori[sz]ed", re.I), "access_denied"),
    (re.compile(r"unrecognized name|not found|does not exist|unknown (table|column|function)",
                re.I), "not_found"),
    (re.compile(r"quota|exceeded|too many|resources", re.I), "resources_exceeded"),
    (re.compile(r"time ?out|timed out|deadline", re.I), "timeout"),
    (re.compile(r"user requested error|\berror\(", re.I), "user_error"),
)


_URL: Final = re.compile(r"\b(?:https?|grpcs?)://\S+", re.I)


def error_class(text: str) -> str:
    """A fixed, value-free name for what kind of error ``text`` reports."""
    for pattern, name in _ERROR_CLASSES:
        if pattern.search(text):
            return name
    return "query_failed"


@dataclass(frozen=True, slots=True)
class ErrorTextPolicy:
    """How the error texts of one call leave: withheld (masked columns were read) or detected."""

    request_id: str
    withhold: bool
    masking: MaskingPolicy | None = None

    def public(self, text: object, *, source: str = "upstream", kind: str = "an error") -> str:
        """``text`` as it may leave; ``kind``: what the source reported (an error, a log
        message), named in the fixed text that replaces a withheld one."""
        raw = text if isinstance(text, str) else str(text)
        if self.withhold:
            return (f"The {source} reported {kind} ({error_class(raw)}). Its text is withheld "
                    "because the statement reads columns that are masked for your role. "
                    f"Request id: {self.request_id}.")
        # The client library names the endpoint it called: internal detail, not the caller's.
        return mask_free_text(_URL.sub("<url>", raw), self.masking)
