"""Peer processes for cross-process tests (propagation chain, OTLP mode).

Each script here runs as its own Python process, started by :mod:`peers.harness`; tests import
``peers.harness`` (``tests/`` is on ``sys.path`` through conftest).
"""

from __future__ import annotations

__all__: list[str] = []
