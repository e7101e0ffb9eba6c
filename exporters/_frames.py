"""The size budget of an error event: which frame local variables are sent, and how much of them.

An error event from a FastAPI route used to weigh about 50 KB, nearly all of it the local
variables of some thirty library frames (ASGI scopes, span attributes, request objects; the probe
that found the secret leaks found them there). What a reader needs is the state of *their* code
where it failed. The budget (``WIDGETTRACE_LOCAL_VARIABLES``):

* ``app`` (default): local variables only on in-app frames (not widgettrace, OpenTelemetry,
  the Sentry SDK or installed libraries), and only on the innermost :data:`MAX_FRAMES_WITH_VARS`
  of them; ``all``: library frames count too (the same limits: the innermost
  :data:`MAX_FRAMES_WITH_VARS` frames); ``off``: none (the SDK does not even collect them).
* per frame at most :data:`MAX_VARS` variables (arguments first, in definition order) and
  :data:`MAX_FRAME_BYTES` of JSON, per event :data:`MAX_VARS_BYTES` (innermost frames first); a
  variable that does not fit is left out and named in ``"…"``;
* each value at most :data:`MAX_DEPTH` levels deep and :data:`MAX_BREADTH` items wide below the
  top, each string at most :data:`MAX_STRING` characters (cut *after* scrubbing, so a secret is
  never cut into a prefix the patterns no longer recognise);
* library frames keep their function, module, file name (relative to its package) and line, not
  their source lines nor their install path.

Measured on a FastAPI route failing three in-app calls deep (28 frames): 86 KB before, about
11 KB now, of which ~6 KB is the stack itself (function, module, file and line of every frame,
the code around the in-app ones), at most 3 KB variables and ~2 KB the installed packages
(Sentry's ``modules``); the rest is the exception message and the breadcrumbs
(``tests/test_event_size.py`` holds it under 12 KB).

:func:`prepare` runs before the SDK serialises the event (less to serialise), :func:`shape`
before scrubbing (less to scrub), :func:`trim` after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from widgettrace.exporters._scrub import dumps

__all__ = [
    "MAX_BREADTH",
    "MAX_DEPTH",
    "MAX_FRAMES_WITH_VARS",
    "MAX_FRAME_BYTES",
    "MAX_STRING",
    "MAX_VARS",
    "MAX_VARS_BYTES",
    "prepare",
    "shape",
    "trim",
]

MAX_FRAMES_WITH_VARS = 5
MAX_VARS = 10
MAX_FRAME_BYTES = 1536
MAX_VARS_BYTES = 3072
MAX_DEPTH = 2
MAX_BREADTH = 10
MAX_STRING = 256
#: Raw strings longer than this are cut before serialising (four times what is kept, so
#: scrubbing still sees every secret that could reach the kept part whole).
_PRE_CUT = 4 * MAX_STRING


def _frames(event: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    for section in ("exception", "threads"):
        container = event.get(section)
        if not isinstance(container, dict):
            continue
        for value in container.get("values") or ():
            stacktrace = value.get("stacktrace") if isinstance(value, dict) else None
            frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
            if isinstance(frames, list):
                yield frames


def prepare(event: dict[str, Any], mode: str = "app") -> None:
    """Before serialisation: drop the variables the budget does not keep (cheap, in place)."""
    for frames in _frames(event):
        kept = 0
        for frame in reversed(frames):  # innermost first
            in_app = frame.get("in_app") is True
            if not in_app:
                # A library's code is on any machine with the same version: its name, file
                # and line locate it. (Sentry groups Python frames by module and function.)
                frame.pop("pre_context", None)
                frame.pop("context_line", None)
                frame.pop("post_context", None)
                if frame.get("filename"):
                    # The install path says nothing the module and file name do not, and
                    # can name a user (/home/<name>/...).
                    frame.pop("abs_path", None)
            variables = frame.get("vars")
            if variables is None:
                continue
            if mode == "off" or (mode == "app" and not in_app) or kept >= MAX_FRAMES_WITH_VARS:
                del frame["vars"]
                continue
            kept += 1
            if isinstance(variables, dict):
                items = list(variables.items())
                frame["vars"] = {
                    k: (v[:_PRE_CUT] if isinstance(v, (str, bytes)) else v)
                    for k, v in items[:MAX_VARS]
                }
                if len(items) > MAX_VARS:
                    frame["vars"]["…"] = f"{len(items) - MAX_VARS} more"


def _cut(value: Any, depth: int, max_string: int = MAX_STRING) -> Any:
    if isinstance(value, str):
        return value if len(value) <= max_string else value[: max_string - 1] + "…"
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"{{…{len(value)} keys}}"
        items = list(value.items())
        out = {str(k): _cut(v, depth + 1, max_string) for k, v in items[:MAX_BREADTH]}
        if len(items) > MAX_BREADTH:
            out["…"] = f"{len(items) - MAX_BREADTH} more"
        return out
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return f"[…{len(value)} items]"
        out_list = [_cut(v, depth + 1, max_string) for v in value[:MAX_BREADTH]]
        if len(value) > MAX_BREADTH:
            out_list.append(f"… {len(value) - MAX_BREADTH} more")
        return out_list
    return value


def shape(event: dict[str, Any]) -> None:
    """Before scrubbing: variables to their depth and breadth, strings to four times their
    final length (less to scrub; whole enough that no secret reaching the kept part is cut)."""
    for frames in _frames(event):
        for frame in frames:
            variables = frame.get("vars")
            if isinstance(variables, dict):
                frame["vars"] = {k: _cut(v, 0, _PRE_CUT) for k, v in variables.items()}


def trim(event: dict[str, Any]) -> None:
    """After scrubbing: cut every kept variable to the per-value, per-frame and per-event
    budget (innermost frames first: they matter most)."""
    left = MAX_VARS_BYTES
    for frames in _frames(event):
        for frame in reversed(frames):
            variables = frame.get("vars")
            if not isinstance(variables, dict):
                continue
            out: dict[str, Any] = {}
            used = 2
            limit = min(MAX_FRAME_BYTES, left)
            left_out: list[str] = []
            for name, value in variables.items():
                cut = _cut(value, 0)
                size = len(dumps(cut)) + len(name) + 4
                if used + size > limit:
                    left_out.append(str(name))
                    continue
                used += size
                out[name] = cut
            if left_out:
                out["…"] = _cut("left out (size): " + ", ".join(left_out), 0)
            frame["vars"] = out
            left = max(0, left - used)
