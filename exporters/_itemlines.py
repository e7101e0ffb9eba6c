"""Local-log lines for Sentry's batch and session items: one JSON object per span, log, session.

A ``span`` or ``log`` item holds ``{"version": 2, "items": [...]}``; the local log keeps one line
per element, so ``tail``, ``grep`` and the insights layer see one record a line as they do for
events and transactions. Each line is the element as Sentry receives it plus a ``"type"`` key
(``span``, ``log``, ``session``, ``sessions``); an explicit session's line also has its ``name``
(which Sentry's session schema has no place for, so only the local log keeps it).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["BATCH_ITEM_TYPES", "item_lines"]

#: Item types whose payload :func:`item_lines` splits or labels.
BATCH_ITEM_TYPES = frozenset({"span", "log", "session", "sessions"})


def _payload(item: Any) -> Any:
    payload = item.payload
    if payload.json is not None:
        return payload.json
    return orjson.loads(item.get_bytes())


def item_lines(item: Any) -> list[bytes]:
    """The local-log lines of one ``span`` / ``log`` / ``session`` / ``sessions`` item."""
    kind = item.type
    doc = _payload(item)
    if kind in ("span", "log"):
        return [orjson.dumps({"type": kind, **element}) for element in doc.get("items", ())]
    line = {"type": kind, **doc}
    if kind == "session":
        from widgettrace.exporters._sessions import local_name

        name = local_name(str(doc.get("sid")))
        if name:
            line["name"] = name
    return [orjson.dumps(line)]
