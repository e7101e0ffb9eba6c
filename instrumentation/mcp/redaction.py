"""Opt-in tool payload capture: secret-looking keys and values replaced, size capped."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.trace import Span

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation.mcp._common import _FILTERED, _is_map

# --- payload capture ---------------------------------------------------------------------------

_SECRET_KEY_PARTS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "signature",
    "session",
)
_SECRET_KEY_WORDS: Final = frozenset({"key", "auth", "pwd", "pass", "jwt", "bearer", "sid"})
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET_VALUE: Final = re.compile(
    r"^\s*(bearer|basic|token)\s+\S+"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}"
    r"|\b(ghp|gho|ghs|ghu|github_pat|glpat|xox[abpr])[-_][A-Za-z0-9_-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b",
    re.IGNORECASE,
)
_MAX_DEPTH: Final = 8
_MAX_ITEMS: Final = 200


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    if any(part in lowered for part in _SECRET_KEY_PARTS):
        return True
    # camelCase words too: "apiKey" -> "api key"
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).lower()
    return any(word in _SECRET_KEY_WORDS for word in _WORD_SPLIT.split(spaced))


def redact(value: Any, _depth: int = 0) -> Any:
    """A JSON-able copy of ``value`` with secret-looking keys and values replaced by [Filtered]."""
    if _depth > _MAX_DEPTH:
        return "[...]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for count, (key, item) in enumerate(value.items()):
            if count >= _MAX_ITEMS:
                out["..."] = f"{len(value) - count} more"
                break
            skey = str(key)
            out[skey] = _FILTERED if _secret_key(skey) else redact(item, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [redact(item, _depth + 1) for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... {len(value) - _MAX_ITEMS} more")
        return items
    if isinstance(value, str):
        if _SECRET_VALUE.search(value):
            return _FILTERED
        return _EMAIL.sub(_FILTERED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), _depth + 1)


def _payload(value: Any, max_bytes: int) -> str:
    text = json.dumps(redact(value), ensure_ascii=False, default=str, separators=(",", ":"))
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes)].decode("utf-8", errors="ignore") + "...[truncated]"


def _tool_result_payload(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("content", "structuredContent", "isError") if k in result}


def _record_arguments(span: Span, method: str, params: Any, capture: bool, max_bytes: int) -> None:
    """The opt-in ``gen_ai.tool.call.arguments`` of a ``tools/call`` (sender and receiver)."""
    if capture and method == "tools/call" and _is_map(params) and span.is_recording():
        span.set_attribute(
            sc.GEN_AI_TOOL_CALL_ARGUMENTS,
            _payload(params.get("arguments") or {}, max_bytes),
        )
