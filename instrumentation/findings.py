"""Findings importers: what type checkers, linters and model scanners report, as Sentry events.

``widgettrace findings FILE|- --format FORMAT`` reads one tool's report and sends ONE custom
event per finding, through the same exporter as everything else (``SENTRY_DSN`` and/or the
local log)::

    mypy --output json src/ | widgettrace findings - --format mypy
    ruff check --output-format sarif . > ruff.sarif
    widgettrace findings ruff.sarif --format sarif
    picklescan -p models/ 2>&1 | widgettrace findings - --format picklescan

Formats: ``sarif`` (SARIF 2.1.0: ruff, bandit, semgrep, CodeQL, ...), ``mypy`` (mypy's own
``--output json`` lines), ``ruff`` (ruff's SARIF or its ``--output-format json``) and
``picklescan`` (its report lines ``<file>: dangerous import 'os system' FOUND``; the scanner of
pickled model files for the "Hugging Face detector" role).

Each event: ``level`` from the finding's severity (SARIF error/warning/note, mypy
error/note, picklescan dangerous=error, suspicious=warning), ``fingerprint`` =
``["finding", tool, rule, file, line]`` (a finding that persists is one issue that counts up;
one that disappears stops being seen: the insights layer shows it resolved), tags ``tool``,
``rule``, ``file`` (plus the CI run's, see :mod:`._ci`), a ``finding`` context with the
details, and a one-line summary ``tool rule: message (file:line)`` as the message.

Re-importing the same run is idempotent: event ids are derived from the run (``--run-id``,
default the CI run id, else a digest of the report) and the finding, so Sentry stores each once
and the importer skips ids the local log already holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

__all__ = [
    "FORMATS",
    "Finding",
    "add_command",
    "event_fields",
    "import_findings",
    "parse",
]

LEVELS = ("fatal", "error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One problem a tool reported, normalised."""

    tool: str
    rule: str
    level: str  # fatal | error | warning | info
    message: str
    file: str = ""
    line: int | None = None
    column: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def summary(self) -> str:
        """``tool rule: message (file:line)`` on one line."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else self.rule
        where = f" ({self.location})" if self.location else ""
        return f"{self.tool} {self.rule}: {first}{where}"

    @property
    def fingerprint(self) -> list[str]:
        return ["finding", self.tool, self.rule, self.file, str(self.line or "")]


def _relative(uri: str, root: Path) -> str:
    """A report's file reference as a path relative to ``root`` when it lies inside it."""
    if uri.startswith("file:"):
        uri = unquote(urlsplit(uri).path)
    path = Path(uri)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            return path.as_posix()
    return path.as_posix().removeprefix("./")


# --- SARIF 2.1.0 ---------------------------------------------------------------------------------

_SARIF_LEVELS = {"error": "error", "warning": "warning", "note": "info", "none": "info"}


def _sarif_rule(run: dict[str, Any], result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rules = ((run.get("tool") or {}).get("driver") or {}).get("rules") or []
    rule_id = result.get("ruleId") or (result.get("rule") or {}).get("id")
    index = result.get("ruleIndex", (result.get("rule") or {}).get("index"))
    rule: dict[str, Any] = {}
    if isinstance(index, int) and 0 <= index < len(rules):
        rule = rules[index]
    elif rule_id:
        rule = next((r for r in rules if r.get("id") == rule_id), {})
    return str(rule_id or rule.get("id") or "unknown"), rule


def _sarif_base(run: dict[str, Any], base_id: str | None, root: Path) -> str:
    bases = run.get("originalUriBaseIds") or {}
    base = bases.get(base_id) if base_id else None
    return _relative(str(base["uri"]), root) if base and base.get("uri") else ""


def parse_sarif(doc: Any, root: Path) -> Iterator[Finding]:
    """Findings in a SARIF 2.1.0 log (every run, every result except kind pass/notApplicable)."""
    for run in doc.get("runs") or []:
        driver = (run.get("tool") or {}).get("driver") or {}
        tool = str(driver.get("name") or "sarif").lower()
        for result in run.get("results") or []:
            if result.get("kind") in {"pass", "notApplicable"}:
                continue
            rule_id, rule = _sarif_rule(run, result)
            default = (rule.get("defaultConfiguration") or {}).get("level")
            level = _SARIF_LEVELS.get(str(result.get("level") or default or "warning"), "warning")
            severity = (rule.get("properties") or {}).get("security-severity")
            message = result.get("message") or {}
            text = message.get("text") or (rule.get("messageStrings") or {}).get(
                message.get("id") or "", {}
            ).get("text", "")
            file, line, column = "", None, None
            for location in result.get("locations") or []:
                physical = location.get("physicalLocation") or {}
                artifact = physical.get("artifactLocation") or {}
                if artifact.get("uri"):
                    base = _sarif_base(run, artifact.get("uriBaseId"), root)
                    file = _relative(str(artifact["uri"]), root)
                    if base and not Path(file).is_absolute():
                        file = f"{base.rstrip('/')}/{file}"
                    region = physical.get("region") or {}
                    line, column = region.get("startLine"), region.get("startColumn")
                    break
            details: dict[str, Any] = {"tool.version": driver.get("version")}
            help_uri = rule.get("helpUri")
            if help_uri:
                details["help_uri"] = help_uri
            if severity is not None:
                details["security_severity"] = severity
            yield Finding(tool, rule_id, level, str(text), file, line, column, details)


# --- mypy --output json --------------------------------------------------------------------------


def parse_mypy(text: str, root: Path) -> Iterator[Finding]:
    """mypy's JSON lines; a ``note`` that follows an error is folded into that error."""
    pending: Finding | None = None
    notes: list[str] = []

    def done() -> Iterator[Finding]:
        if pending is not None:
            details = dict(pending.details)
            if notes:
                details["notes"] = list(notes)
            yield Finding(
                pending.tool,
                pending.rule,
                pending.level,
                pending.message,
                pending.file,
                pending.line,
                pending.column,
                details,
            )

    for line in text.splitlines():
        raw = line.strip()
        if not raw.startswith("{"):
            continue  # mypy's trailing "Found N errors" goes to stdout in text form
        entry = json.loads(raw)
        severity = str(entry.get("severity") or "error")
        if severity == "note" and pending is not None:
            notes.append(str(entry.get("message") or ""))
            continue
        yield from done()
        notes = []
        details: dict[str, Any] = {}
        if entry.get("hint"):
            details["hint"] = entry["hint"]
        pending = Finding(
            "mypy",
            str(entry.get("code") or "misc"),
            "error" if severity == "error" else "info",
            str(entry.get("message") or ""),
            _relative(str(entry.get("file") or ""), root),
            entry.get("line"),
            entry.get("column"),
            details,
        )
    yield from done()


# --- ruff (SARIF or its JSON) --------------------------------------------------------------------


def parse_ruff(text: str, root: Path) -> Iterator[Finding]:
    """ruff's ``--output-format sarif`` or ``--output-format json``."""
    doc = json.loads(text)
    if isinstance(doc, dict):
        yield from parse_sarif(doc, root)
        return
    for entry in doc:
        location = entry.get("location") or {}
        details = {"help_uri": entry["url"]} if entry.get("url") else {}
        yield Finding(
            "ruff",
            str(entry.get("code") or "syntax-error"),
            "error" if entry.get("code") is None else "warning",
            str(entry.get("message") or ""),
            _relative(str(entry.get("filename") or ""), root),
            location.get("row"),
            location.get("column"),
            details,
        )


# --- picklescan ----------------------------------------------------------------------------------

_PICKLESCAN_LINE = re.compile(
    r"^(?P<file>.+?): (?P<safety>dangerous|suspicious) import '(?P<module>\S+) (?P<name>\S+)' "
    r"FOUND(?P<strict> \(promoted by --strict\))?$"
)


def parse_picklescan(text: str, root: Path) -> Iterator[Finding]:
    """picklescan's report lines (stdout or stderr; the summary lines are ignored)."""
    for raw in text.splitlines():
        match = _PICKLESCAN_LINE.match(raw.strip())
        if match is None:
            continue
        imported = f"{match['module']}.{match['name']}"
        dangerous = match["safety"] == "dangerous"
        yield Finding(
            "picklescan",
            f"{match['safety']}-import",
            "error" if dangerous else "warning",
            f"{match['safety']} import {imported} in a pickle (runs when the file is loaded)",
            _relative(match["file"], root),
            None,
            None,
            {"global": imported, "strict": bool(match["strict"])},
        )


def _from_json(parser: Callable[[Any, Path], Iterator[Finding]]) -> Parser:
    return lambda text, root: parser(json.loads(text), root)


Parser = Callable[[str, Path], Iterator[Finding]]

FORMATS: dict[str, Parser] = {
    "sarif": _from_json(parse_sarif),
    "mypy": parse_mypy,
    "ruff": parse_ruff,
    "picklescan": parse_picklescan,
}


def parse(text: str, fmt: str, root: Path | None = None) -> list[Finding]:
    """Every finding in ``text`` (a report in format ``fmt``)."""
    return list(FORMATS[fmt](text, root or Path.cwd()))


# --- events --------------------------------------------------------------------------------------


def event_fields(finding: Finding, run_id: str, occurrence: int = 0) -> dict[str, Any]:
    """The Sentry event fields for one finding (message and level are passed separately)."""
    from widgettrace.instrumentation._ci import ci_attributes
    from widgettrace.instrumentation._events import stable_event_id, tag_value

    tags = {
        "tool": finding.tool,
        "rule": tag_value(finding.rule),
        "finding.level": finding.level,
    }
    if finding.file:
        tags["file"] = tag_value(finding.file)
    tags.update({key: tag_value(value) for key, value in ci_attributes().items()})
    context: dict[str, Any] = {
        "tool": finding.tool,
        "rule": finding.rule,
        "file": finding.file,
        "line": finding.line,
        "column": finding.column,
        "message": finding.message,
        "run_id": run_id,
    }
    context.update({k: v for k, v in finding.details.items() if v is not None})
    return {
        "event_id": stable_event_id(run_id, *finding.fingerprint, finding.message, str(occurrence)),
        "fingerprint": finding.fingerprint,
        "logger": f"widgettrace.findings.{finding.tool}",
        "culprit": finding.location or finding.tool,
        "tags": tags,
        "contexts": {"finding": {k: v for k, v in context.items() if v is not None}},
    }


def _known_event_ids() -> set[str]:
    """Event ids already in the local log (so a re-import does not write them twice)."""
    from widgettrace.instrumentation._config import get_settings

    path = get_settings().log_path
    ids: set[str] = set()
    if not path or not Path(path).exists():
        return ids
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("event_id"), str):
                ids.add(record["event_id"])
    return ids


@dataclass
class ImportResult:
    """What :func:`import_findings` did."""

    findings: list[Finding]
    sent: int = 0
    skipped: int = 0
    delivered: bool = True


def import_findings(text: str, fmt: str, *, run_id: str | None = None) -> ImportResult:
    """Parse ``text`` and send one event per finding (configuring widgettrace if needed)."""
    from widgettrace.instrumentation import _events
    from widgettrace.instrumentation._ci import ci_attributes
    from widgettrace.instrumentation.configurator import configure
    from widgettrace.instrumentation.semconv import CICD_PIPELINE_RUN_ID

    findings = parse(text, fmt)
    run = run_id or ci_attributes().get(CICD_PIPELINE_RUN_ID)
    run = run or hashlib.sha256(f"{fmt}\n{text}".encode()).hexdigest()[:16]
    result = ImportResult(findings)
    if not findings:
        return result
    configure()
    known = _known_event_ids()
    seen: dict[tuple[str, ...], int] = {}
    for finding in findings:
        key = (*finding.fingerprint, finding.message)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        fields = event_fields(finding, run, occurrence)
        if fields["event_id"] in known:
            result.skipped += 1
            continue
        if _events.send_event(level=finding.level, message=finding.summary, fields=fields):
            result.sent += 1
    if result.sent:
        result.delivered = _events.flush(timeout=10.0)
    return result


# --- command line --------------------------------------------------------------------------------


def _run(args: argparse.Namespace, out: TextIO) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    if args.dry_run:
        for finding in parse(text, args.format):
            print(f"{finding.level:7} {finding.summary}", file=out)
        return 0
    try:
        result = import_findings(text, args.format, run_id=args.run_id)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"widgettrace findings: cannot read {args.file} as {args.format}: {exc}", file=out)
        return 2
    by_level: dict[str, int] = {}
    for finding in result.findings:
        by_level[finding.level] = by_level.get(finding.level, 0) + 1
    levels = ", ".join(f"{by_level[lv]} {lv}" for lv in LEVELS if lv in by_level) or "none"
    print(
        f"{len(result.findings)} finding(s) from {args.format} ({levels}): "
        f"{result.sent} sent, {result.skipped} already imported",
        file=out,
    )
    if result.sent and not result.delivered:
        print("widgettrace findings: not every event was flushed in 10 s", file=out)
        return 1
    return 0


def add_command(commands: Any) -> None:
    """Register ``widgettrace findings`` on the CLI's subparsers."""
    cmd = commands.add_parser("findings", help="import a tool's findings as Sentry events")
    cmd.add_argument("file", metavar="FILE", help="the tool's report, or - for stdin")
    cmd.add_argument("--format", required=True, choices=sorted(FORMATS), help="report format")
    cmd.add_argument("--run-id", default=None, help="run identity (default: CI run, else digest)")
    cmd.add_argument("--dry-run", action="store_true", help="print the findings, send nothing")
    cmd.set_defaults(run=_run)
