"""The command ``tests/test_dev.py`` runs under ``widgettrace dev``: run the app, then hold.

``python dev_child.py OUTDIR COMMAND...`` records the settings ``widgettrace dev`` gave it
(``OUTDIR/env.json``), runs ``COMMAND`` (the example platform), writes its exit status to
``OUTDIR/app.rc`` and then waits until ``OUTDIR/release`` exists (so the test can read the
servers back while they still run) before exiting with that status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

out = Path(sys.argv[1])
(out / "env.json").write_text(
    json.dumps({k: os.environ.get(k) for k in ("SENTRY_DSN", "SENTRY_SPOTLIGHT")}), "utf-8"
)
rc = subprocess.call(sys.argv[2:])
(out / "app.rc").write_text(str(rc), "utf-8")
deadline = time.monotonic() + 180
while not (out / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.1)
sys.exit(rc)
