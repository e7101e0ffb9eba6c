"""widgettrace: OpenTelemetry-based observability for widget platforms (placeholder, filled at integration)."""

from __future__ import annotations

__all__: list[str] = []
__version__ = "0.1.0"
