"""Real receivers for the test suite, all bound to 127.0.0.1.

* ``SentryReceiver`` (``receivers.sentry_receiver``): our own Sentry-protocol ingest endpoint,
  with envelope decoding, fault modes and sentry-relay normalisation of every event.
* ``receivers.relay.normalize``: sentry-relay's ``StoreNormalizer`` as a function.
* ``receivers.bugsink``: a real Bugsink server (own venv ``.venv-bugsink``): errors grouped
  into issues, releases.
* ``receivers.spotlight``: a real Spotlight sidecar (node), errors and whole traces.
* ``receivers.fixtures``: the pytest fixtures (``sentry_receiver``, ``bugsink``, ``spotlight``,
  ``no_normalization_errors``); register with ``pytest_plugins = ["receivers.fixtures"]``.

Setup of the external ones: ``scripts/setup-receivers.sh``.
"""

from __future__ import annotations

from receivers.relay import normalize
from receivers.sentry_receiver import EnvelopeItem, ReceivedEnvelope, SentryReceiver

__all__ = ["EnvelopeItem", "ReceivedEnvelope", "SentryReceiver", "normalize"]
