"""widgettrace's reading side: the local log as issues, releases, performance and a standup.

Built on DuckDB (see :mod:`widgettrace.insights._store`). Each view is a module with a function
that takes a :class:`Store` and returns plain data (dicts and lists, JSON-ready)::

    from widgettrace.insights import open_store, issues
    with open_store(".claude/logs/sentry.log") as store:
        for issue in issues.list_issues(store):
            print(issue["title"], issue["count"])

Views: :mod:`.issues`, :mod:`.releases`, :mod:`.performance`, :mod:`.journeys`, :mod:`.standup`;
:mod:`.render` turns any of them into text, Markdown or JSON. DuckDB is imported on first use,
not with this package, so the ``widgettrace`` command starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from widgettrace.insights._query import Window
    from widgettrace.insights._store import InsightsError, Store, open_store, store_path

__all__ = ["InsightsError", "Store", "Window", "open_store", "store_path"]


def __getattr__(name: str) -> Any:
    if name == "Window":
        from widgettrace.insights import _query

        return _query.Window
    if name in __all__:
        from widgettrace.insights import _store

        return getattr(_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
