"""Local development tools: the real local UIs (Spotlight, Bugsink) one command away.

* :mod:`widgettrace.devtools.spotlight`: start/stop Spotlight (npm) on 127.0.0.1.
* :mod:`widgettrace.devtools.bugsink`: start/stop Bugsink (its own virtual environment) on
  127.0.0.1, with its REST API.
* :mod:`widgettrace.devtools.dev`: the ``widgettrace dev`` command that starts them and runs an
  app pointed at them.

The test suite's receivers (``tests/receivers/``) start them through these same modules.
"""

from __future__ import annotations

__all__: list[str] = []
