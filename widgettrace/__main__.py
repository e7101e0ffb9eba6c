"""``python -m widgettrace``: the same command line as the ``widgettrace`` console script."""

from __future__ import annotations

from widgettrace.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
