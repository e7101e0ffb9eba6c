"""widgettrace's reading side: the local log as issues, releases, performance and a standup.

Built on DuckDB (see :mod:`widgettrace.insights._store`). Each view is a module with a function
that takes a :class:`Store` and returns plain data (dicts and lists, JSON-ready)::

    from widgettrace.insights import open_store, issues
    with open_store(".claude/logs/sentry.log") as store:
        for issue in issues.list_issues(store):
            print(issue["title"], issue["count"])
"""

from __future__ import annotations

from widgettrace.insights._store import InsightsError, Store, open_store, store_path

__all__ = ["InsightsError", "Store", "open_store", "store_path"]
