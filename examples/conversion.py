"""Widget conversion: parse a raw config, validate it, run inference, write it to the registry.

The pipeline is traced two ways: ``convert_widget`` and the parse stage use widgettrace's
``conversion_span`` in code (hot path); ``validate_config`` and ``run_inference`` are traced by
configuration only (``WIDGETTRACE_TRACE_FUNCTIONS`` as set by examples/run.py).

Two of the example's failures happen here, and neither is caught: the request handler lets them
escape, so the HTTP server span ends with a 500 and each becomes one error event linked to the
span where it was raised:

* a config that is not JSON raises ``json.JSONDecodeError`` in the parse stage;
* a widget re-published under an existing name and version raises ``sqlite3.IntegrityError``
  from the registry's UNIQUE constraint.

Usage::

    summary = convert_widget("w-1", raw_json_text, registry)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from registry import WidgetRegistry
from widgettrace import add_breadcrumb, conversion_span

__all__ = ["WidgetSpec", "convert_widget", "parse_config", "run_inference", "validate_config"]

_EMBEDDING_DIM = 48
_LAYERS = 3


@dataclass(frozen=True)
class WidgetSpec:
    """A validated widget config."""

    name: str
    version: str
    widget_type: str
    inputs: tuple[str, ...]


def parse_config(widget_id: str, raw: str) -> dict[str, Any]:
    """Parse the raw JSON config (raises ``json.JSONDecodeError`` on malformed input)."""
    with conversion_span(widget_id, stage="parse"):
        config: dict[str, Any] = json.loads(raw)
        return config


def validate_config(config: dict[str, Any]) -> WidgetSpec:
    """Check the fields every widget needs (traced by configuration only)."""
    missing = [key for key in ("name", "version", "type", "inputs") if key not in config]
    if missing:
        raise ValueError(f"widget config lacks {', '.join(missing)}")
    return WidgetSpec(
        name=str(config["name"]),
        version=str(config["version"]),
        widget_type=str(config["type"]),
        inputs=tuple(str(i) for i in config["inputs"]),
    )


def run_inference(spec: WidgetSpec) -> list[float]:
    """Embed the widget for similarity search: a small dense network in pure Python.

    CPU-bound on purpose (a few milliseconds); traced by configuration only.
    """
    seed = hashlib.sha256(f"{spec.name}:{spec.version}:{spec.inputs}".encode()).digest()
    vector = [b / 255.0 for b in seed[: _EMBEDDING_DIM // 2]] * 2
    for layer in range(_LAYERS):
        weights = [
            [math.sin((i + 1) * (j + 1) * (layer + 1) * 0.37) for j in range(_EMBEDDING_DIM)]
            for i in range(_EMBEDDING_DIM)
        ]
        vector = [
            math.tanh(sum(w * v for w, v in zip(row, vector, strict=True))) for row in weights
        ]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def convert_widget(widget_id: str, raw: str, registry: WidgetRegistry) -> dict[str, Any]:
    """Run the whole pipeline for one widget and register it."""
    with conversion_span(widget_id) as current:
        config = parse_config(widget_id, raw)
        spec = validate_config(config)
        current.set_attribute("widget.type", spec.widget_type)
        embedding = run_inference(spec)
        add_breadcrumb(
            "widget embedded", category="conversion", data={"widget": widget_id, "dim": 48}
        )
        registry.insert(
            widget_id=widget_id,
            name=spec.name,
            version=spec.version,
            widget_type=spec.widget_type,
            norm=round(sum(abs(v) for v in embedding), 6),
        )
        return {
            "id": widget_id,
            "name": spec.name,
            "version": spec.version,
            "type": spec.widget_type,
        }
