"""Alerts: follow the local log and POST Slack-compatible messages to a webhook.

:class:`Watcher` polls the log (incrementally, see ``_store``) and evaluates the rules of
:class:`Rules` on what arrived:

* ``first_seen``: an issue never seen before (in this log) has an event;
* ``regression``: an event of an issue whose status was ``resolved`` (absent from the latest
  release with traffic) before it;
* ``spike``: an issue's events in the last minute reach ``spike_factor`` times its average per
  minute over the previous hour (and at least ``spike_min``);
* ``error_rate``: errors in the last minute at or above ``error_rate_per_min``;
* ``latency``: p95 of the transactions that ended in the last minute above ``p95_ms``.

One alert per rule and issue (or per rule, for the global ones) per ``window_s``: no storms.
What is already in the log when the watcher starts is the baseline, not news.

:class:`WebhookSender` delivers from its own thread through a bounded queue: retries with
exponential backoff, short timeouts, and when the webhook is down the queue fills and further
alerts are dropped and counted: the caller never waits. The payload is Slack's incoming-webhook
JSON (``text`` plus one ``mrkdwn`` section block), which Mattermost, Discord's ``/slack``
endpoint and most chat tools accept too.

The watcher runs in its own process (``widgettrace watch``, or started in the background by the
app when ``WIDGETTRACE_ALERT_WEBHOOK`` is set, see :mod:`.background`), so its DuckDB work never
shares the app's CPU time slice or memory.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from widgettrace.insights import issues as issues_view
from widgettrace.insights._store import Store, open_store

__all__ = ["Alert", "Rules", "Watcher", "WebhookSender", "slack_payload"]


@dataclass(frozen=True)
class Rules:
    """Which rules run and their thresholds (``None`` turns a threshold rule off)."""

    first_seen: bool = True
    regression: bool = True
    spike_factor: float | None = 3.0
    spike_min: int = 10
    error_rate_per_min: float | None = None
    p95_ms: float | None = None
    window_s: float = 300.0


@dataclass
class Alert:
    rule: str
    key: str
    title: str
    text: str
    #: When the event that triggered it was written (epoch seconds), for latency figures.
    event_ts: float | None = None


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack's incoming-webhook message for ``alert``."""
    headline = {
        "first_seen": "New issue",
        "regression": "Regression",
        "spike": "Spike",
        "error_rate": "Error rate",
        "latency": "Slow transactions",
    }.get(alert.rule, alert.rule)
    text = f"[widgettrace] {headline}: {alert.title}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*\n{alert.text}"}}
        ],
    }


class WebhookSender:
    """POSTs alerts from a background thread; never blocks or raises into the caller."""

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 100,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=max_queue)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="widgettrace-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Queue ``alert``; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _post(self, alert: Alert) -> None:
        body = json.dumps(slack_payload(alert)).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            for attempt in range(self.retries + 1):
                try:
                    self._post(alert)
                    self.sent += 1
                    break
                except (urllib.error.URLError, OSError, ValueError):
                    if attempt == self.retries:
                        self.failed += 1
                    else:
                        time.sleep(self.backoff_s * (2**attempt))


class Watcher:
    """Follows one log and turns what arrives into alerts (see the module docstring)."""

    def __init__(self, log: str | Path, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()
        # In memory: the watcher never holds the derived-tables file other reports use.
        self.store: Store = open_store(log, persist=False)
        self._seen_rows = self._error_rows()
        self._known = {
            r["group_key"] for r in self.store.rows("SELECT DISTINCT group_key FROM errors")
        }
        self._last_alert: dict[tuple[str, str], float] = {}

    def _error_rows(self) -> int:
        return int(self.store.scalar("SELECT count(*) FROM errors") or 0)

    def _due(self, rule: str, key: str, now: float) -> bool:
        last = self._last_alert.get((rule, key))
        if last is not None and now - last < self.rules.window_s:
            return False
        self._last_alert[rule, key] = now
        return True

    def poll(self, now: float | None = None) -> list[Alert]:
        """Read what was appended and return the alerts it raises."""
        rules = self.rules
        statuses: dict[str, str] = {}
        if rules.regression:
            statuses = {i["group_key"]: i["status"] for i in issues_view.list_issues(self.store)}
        self.store.refresh()
        now = time.time() if now is None else now
        alerts: list[Alert] = []
        new = self.store.rows(
            "SELECT group_key, any_value(title) AS title, count(*) AS n, min(ts) AS first_ts, "
            "any_value(release) AS release, any_value(exc_value) AS value "
            "FROM (SELECT * FROM errors WHERE rowid >= ?) GROUP BY group_key",
            [self._seen_rows],
        )
        self._seen_rows = self._error_rows()
        for row in new:
            key = row["group_key"]
            detail = f"{row['n']} event(s), release {row['release'] or '-'}: {row['value']}"
            if key not in self._known:
                self._known.add(key)
                if rules.first_seen and self._due("first_seen", key, now):
                    alerts.append(Alert("first_seen", key, row["title"], detail, row["first_ts"]))
            elif statuses.get(key) == "resolved" and self._due("regression", key, now):
                alerts.append(Alert("regression", key, row["title"], detail, row["first_ts"]))
        if rules.spike_factor is not None and new:
            alerts += self._spikes([r["group_key"] for r in new], now)
        if rules.error_rate_per_min is not None:
            n = int(self.store.scalar("SELECT count(*) FROM errors WHERE ts >= ?", [now - 60]))
            if n >= rules.error_rate_per_min and self._due("error_rate", "*", now):
                alerts.append(Alert("error_rate", "*", f"{n} errors in the last minute",
                                    f"threshold {rules.error_rate_per_min:g}/min"))
        if rules.p95_ms is not None:
            alerts += self._latency(now)
        return alerts

    def _spikes(self, keys: list[str], now: float) -> list[Alert]:
        rules = self.rules
        assert rules.spike_factor is not None
        rows = self.store.rows(
            f"""
            SELECT group_key, any_value(title) AS title,
                count(*) FILTER (WHERE ts >= ?) AS last_min,
                count(*) FILTER (WHERE ts >= ? AND ts < ?) / 60.0 AS per_min
            FROM errors WHERE group_key IN ({", ".join("?" for _ in keys)}) AND ts >= ?
            GROUP BY group_key
            """,
            [now - 60, now - 3660, now - 60, *keys, now - 3660],
        )
        out = []
        for r in rows:
            baseline = max(r["per_min"], 1e-9)
            if (
                r["last_min"] >= rules.spike_min
                and r["last_min"] >= rules.spike_factor * baseline
                and self._due("spike", r["group_key"], now)
            ):
                out.append(Alert("spike", r["group_key"], r["title"],
                                 f"{r['last_min']} events in the last minute, "
                                 f"{r['per_min']:.2f}/min over the hour before"))
        return out

    def _latency(self, now: float) -> list[Alert]:
        assert self.rules.p95_ms is not None
        rows = self.store.rows(
            "SELECT name, quantile_cont(duration_ms, 0.95) AS p95, count(*) AS n "
            "FROM transactions WHERE ts >= ? GROUP BY name HAVING p95 > ? ORDER BY p95 DESC",
            [now - 60, self.rules.p95_ms],
        )
        return [
            Alert("latency", r["name"], f"{r['name']} p95 {r['p95']:.0f} ms",
                  f"{r['n']} transactions in the last minute, threshold {self.rules.p95_ms:g} ms")
            for r in rows
            if self._due("latency", r["name"], now)
        ]

    def close(self) -> None:
        self.store.close()
