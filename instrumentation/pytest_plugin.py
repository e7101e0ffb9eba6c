"""pytest plugin: a test run as one trace, each failure one Sentry error event.

Installed with widgettrace (the ``pytest11`` entry point ``widgettrace``) but OFF unless asked,
so installing the package never changes anyone's test runs. Turn it on with any of::

    pytest -p widgettrace                 # or PYTEST_ADDOPTS="-p widgettrace"
    WIDGETTRACE_PYTEST=1 pytest
    [pytest] widgettrace = true           # ini option (pytest.ini / pyproject / tox.ini)

What it sends (through :func:`widgettrace.configure`, so ``SENTRY_DSN`` or the local log):

* the session is a trace: a root span ``pytest session`` (op ``test.session``) with the suite's
  name, its run status and the CI run (``cicd.*``/``vcs.*``, see :mod:`._ci`);
* each test is a child span named by its node id (op ``test``): ``test.case.name``,
  ``test.case.result.status`` (pass/fail), ``widget.test.outcome`` (passed, failed, error,
  skipped, xfailed, xpassed), ``widget.test.parameters`` and ``widget.test.param.<name>`` for
  parametrised tests, ``widget.test.reruns`` and ``widget.test.flaky``. Code the test calls
  runs inside that span, so its own spans and errors join the test's trace;
* each failed or erroring test is ONE error event linked to its span, grouped by
  ``fingerprint = [node id, exception type, in-app culprit]``; its message is the assertion's
  explanation; tags carry the node id, outcome, phase, CI provider, branch and commit; the
  release is ``SENTRY_RELEASE`` or else the CI commit;
* a flaky test (failed, then passed on a pytest-rerunfailures rerun) is one event too, level
  ``warning``, tagged ``test.flaky=true`` and its span ``widget.test.flaky=true``;
* with pytest-xdist, the controller's session span context travels to the workers
  (``workerinput``); each worker's ``pytest worker gwN`` span is its child: one trace.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ENV_VAR", "INI_OPTION", "is_enabled"]

ENV_VAR = "WIDGETTRACE_PYTEST"
INI_OPTION = "widgettrace"
_PLUGIN_NAME = "widgettrace"
_WORKER_KEY = "widgettrace_traceparent"
_MESSAGE_LIMIT = 4000


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini switch (cheap: nothing is imported until the plugin is enabled)."""
    parser.addini(INI_OPTION, "send the test run to widgettrace (Sentry / local log)", "bool")


def is_enabled(config: pytest.Config) -> bool:
    """``-p widgettrace``, the ``widgettrace`` ini option, or ``WIDGETTRACE_PYTEST`` true."""
    if _PLUGIN_NAME in (getattr(config.option, "plugins", None) or []):
        return True
    try:
        if config.getini(INI_OPTION):
            return True
    except ValueError:
        pass
    from widgettrace.instrumentation._config import get_settings

    return get_settings().pytest_enabled


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Start the session recorder when enabled; otherwise stay a no-op."""
    if not is_enabled(config):
        return
    from widgettrace.instrumentation._guard import internal_errors

    with internal_errors("pytest.configure"):
        from widgettrace.instrumentation.configurator import configure

        if configure():
            config.pluginmanager.register(_Recorder(config), "widgettrace-recorder")


@dataclass
class _Running:
    """What one test's protocol produced so far (all attempts, with reruns)."""

    span: Any
    token: object
    outcomes: list[tuple[str, str, bool]] = field(default_factory=list)  # when, outcome, xfail
    reruns: int = 0
    failure: tuple[pytest.ExceptionInfo[BaseException], str] | None = None  # last one, phase


class _Recorder:
    """The enabled plugin: spans for the session and tests, events for failures."""

    def __init__(self, config: pytest.Config) -> None:
        from opentelemetry import trace

        from widgettrace.instrumentation import semconv
        from widgettrace.instrumentation._ci import ci_attributes
        from widgettrace.instrumentation._config import get_settings

        self.config = config
        self.sc = semconv
        self.tracer = trace.get_tracer("widgettrace.pytest")
        self.ci = ci_attributes()
        settings = get_settings()
        self.release = settings.sentry_release or self.ci.get(semconv.VCS_REF_HEAD_REVISION)
        self.worker: str | None = None
        workerinput: Mapping[str, Any] | None = getattr(config, "workerinput", None)
        self.parent_ctx: Any = None
        if workerinput is not None:
            self.worker = str(workerinput.get("workerid", ""))
            carrier = workerinput.get(_WORKER_KEY)
            if isinstance(carrier, dict):
                from opentelemetry.trace.propagation.tracecontext import (
                    TraceContextTextMapPropagator,
                )

                self.parent_ctx = TraceContextTextMapPropagator().extract(carrier)
        self.session_span: Any = None
        self.session_name = "pytest session" if self.worker is None else f"pytest {self.worker}"
        self.running: dict[str, _Running] = {}
        self.counts: dict[str, int] = {}

    # --- session ------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        with _guard("pytest.sessionstart"):
            self._start_session(session)

    def _start_session(self, session: pytest.Session) -> None:
        sc = self.sc
        attributes: dict[str, Any] = {
            sc.WIDGET_OP: sc.WIDGET_OP_TEST_SESSION,
            sc.TEST_SUITE_NAME: Path(str(session.config.rootpath)).name,
            **self.ci,
        }
        if self.worker:
            attributes[sc.WIDGET_TEST_WORKER] = self.worker
        self.session_span = self.tracer.start_span(
            self.session_name, context=self.parent_ctx, attributes=attributes
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist controller: hand the session span's context to each worker."""
        with _guard("pytest.configure_node"):
            self._configure_node(node)

    def _configure_node(self, node: Any) -> None:
        if self.session_span is None:
            return
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(
            carrier, context=trace.set_span_in_context(self.session_span)
        )
        node.workerinput[_WORKER_KEY] = carrier

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        with _guard("pytest.sessionfinish"):
            self._finish_session(exitstatus)

    def _finish_session(self, exitstatus: int) -> None:
        from opentelemetry.trace import Status, StatusCode

        from widgettrace.instrumentation import _events

        span = self.session_span
        if span is None:
            return
        sc = self.sc
        failed = int(exitstatus) not in (0, 5)  # 5: no tests collected
        span.set_attribute(sc.TEST_SUITE_RUN_STATUS, "failure" if failed else "success")
        for outcome, count in sorted(self.counts.items()):
            span.set_attribute(sc.WIDGET_TEST_COUNT_PREFIX + outcome, count)
        if failed:
            span.set_status(Status(StatusCode.ERROR, f"pytest exit status {int(exitstatus)}"))
        span.end()
        self.session_span = None
        _events.flush(timeout=10.0)

    # --- one test -----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        running = self._start(item)
        try:
            return (yield)
        finally:
            if running is not None:
                self._finish(item, running)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        running = self.running.get(item.nodeid)
        if running is not None and report.failed and call.excinfo is not None:
            running.failure = (call.excinfo, report.when)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        with _guard("pytest.logreport"):
            self._logreport(report)

    def _logreport(self, report: pytest.TestReport) -> None:
        running = self.running.get(report.nodeid)
        if running is None:
            return  # the xdist controller sees the workers' reports: they traced them
        if str(report.outcome) == "rerun":  # pytest-rerunfailures' own outcome
            running.reruns += 1
            running.outcomes.clear()  # the next attempt decides the outcome
            return
        running.outcomes.append((report.when, report.outcome, hasattr(report, "wasxfail")))

    def _start(self, item: pytest.Item) -> _Running | None:
        from widgettrace.instrumentation._guard import internal_errors

        with internal_errors("pytest.start_test"):
            from opentelemetry import context as context_api
            from opentelemetry import trace

            sc = self.sc
            attributes: dict[str, Any] = {
                sc.WIDGET_OP: sc.WIDGET_OP_TEST,
                sc.TEST_CASE_NAME: item.nodeid,
                sc.CODE_FUNCTION_NAME: getattr(item, "originalname", item.name),
            }
            path, line, _ = item.location
            attributes[sc.CODE_FILE_PATH] = path
            if line is not None:
                attributes[sc.CODE_LINE_NUMBER] = line + 1
            callspec = getattr(item, "callspec", None)
            if callspec is not None:
                attributes[sc.WIDGET_TEST_PARAMETERS] = callspec.id
                for name, value in callspec.params.items():
                    attributes[sc.WIDGET_TEST_PARAM_PREFIX + name] = _short_repr(value)
            if self.worker:
                attributes[sc.WIDGET_TEST_WORKER] = self.worker
            parent = trace.set_span_in_context(self.session_span) if self.session_span else None
            span = self.tracer.start_span(item.nodeid, context=parent, attributes=attributes)
            token = context_api.attach(trace.set_span_in_context(span))
            running = _Running(span=span, token=token)
            self.running[item.nodeid] = running
            return running
        return None

    def _finish(self, item: pytest.Item, running: _Running) -> None:
        from opentelemetry import context as context_api
        from opentelemetry.trace import Status, StatusCode

        from widgettrace.instrumentation._guard import internal_errors

        self.running.pop(item.nodeid, None)
        with internal_errors("pytest.finish_test"):
            context_api.detach(running.token)  # type: ignore[arg-type]
        with internal_errors("pytest.finish_test"):
            sc = self.sc
            span = running.span
            outcome = _outcome(running.outcomes)
            flaky = running.reruns > 0 and outcome == "passed"
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            if flaky:
                self.counts["flaky"] = self.counts.get("flaky", 0) + 1
            span.set_attribute(sc.WIDGET_TEST_OUTCOME, outcome)
            span.set_attribute(
                sc.TEST_CASE_RESULT_STATUS,
                "fail" if outcome in {"failed", "error", "xpassed"} else "pass",
            )
            span.set_attribute(sc.WIDGET_TEST_RERUNS, running.reruns)
            span.set_attribute(sc.WIDGET_TEST_FLAKY, flaky)
            if outcome in {"failed", "error"}:
                span.set_status(Status(StatusCode.ERROR, outcome))
            if running.failure is not None and (outcome in {"failed", "error"} or flaky):
                excinfo, phase = running.failure
                self._send_failure(item, span, excinfo, phase, outcome, flaky, running.reruns)
            span.end(end_time=time.time_ns())

    def _send_failure(
        self,
        item: pytest.Item,
        span: Any,
        excinfo: pytest.ExceptionInfo[BaseException],
        phase: str,
        outcome: str,
        flaky: bool,
        reruns: int,
    ) -> None:
        from widgettrace.instrumentation import _events

        exc = excinfo.value
        exc_type = type(exc).__qualname__
        culprit = _culprit(excinfo, Path(str(self.config.rootpath)))
        explanation = excinfo.exconly(tryshort=True)
        if len(explanation) > _MESSAGE_LIMIT:
            explanation = explanation[: _MESSAGE_LIMIT - 1] + "…"
        tags: dict[str, str] = {
            "test.nodeid": _events.tag_value(item.nodeid),
            "test.outcome": outcome,
            "test.phase": phase,
            "test.flaky": "true" if flaky else "false",
        }
        if reruns:
            tags["test.reruns"] = str(reruns)
        if self.worker:
            tags["test.worker"] = self.worker
        for key, value in self.ci.items():
            tags[key] = _events.tag_value(value)
        fields: dict[str, Any] = {
            "fingerprint": [item.nodeid, exc_type, culprit],
            "culprit": culprit,
            "message": f"flaky: {explanation}" if flaky else explanation,
            "tags": tags,
            "contexts": {"test": {"nodeid": item.nodeid, "phase": phase, "reruns": reruns}},
        }
        if self.release:
            fields["release"] = self.release
        _events.send_event(
            level="warning" if flaky else "error",
            exception=exc,
            traceback=excinfo.tb,
            fields=fields,
            span=span,
            transaction=self.session_name,
            handled=False,
        )


def _guard(where: str) -> Any:
    """The project's internal-error guard: a telemetry bug never fails the user's test run."""
    from widgettrace.instrumentation._guard import internal_errors

    return internal_errors(where)


def _outcome(outcomes: list[tuple[str, str, bool]]) -> str:
    """pytest's word for a test from its phase reports (the last attempt's)."""
    for when, outcome, xfail in outcomes:
        if when == "call" and xfail:
            return "xfailed" if outcome == "skipped" else "xpassed"
    for when, outcome, _ in outcomes:
        if outcome == "failed":
            return "failed" if when == "call" else "error"
    if any(outcome == "skipped" for _, outcome, _ in outcomes):
        return "skipped"
    return "passed"


def _short_repr(value: object, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _culprit(excinfo: pytest.ExceptionInfo[BaseException], root: Path) -> str:
    """``relative/path.py:function`` of the deepest frame in the project (not a dependency).

    No line number: an edit above the failing line must not split the issue in two.
    """
    chosen = None
    for entry in excinfo.traceback:
        path = Path(str(entry.path))
        text = str(path)
        if "site-packages" in text or "dist-packages" in text or os.sep + "_pytest" in text:
            continue
        try:
            relative = path.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            continue
        chosen = f"{relative.as_posix()}:{entry.name}"
    if chosen is None and len(excinfo.traceback):
        last = excinfo.traceback[-1]
        chosen = f"{Path(str(last.path)).name}:{last.name}"
    return chosen or "unknown"
