"""Issue grouping and the SQL that turns parsed log lines into the derived tables.

Grouping follows Sentry's rules, evaluated in DuckDB at ingestion (one key per error event):

* a custom ``fingerprint`` (``capture_exception(..., fingerprint=[...])``, ``set_fingerprint``)
  wins; its ``{{ default }}`` element stands for the default key below;
* an exception: the chain's types, each with its in-app frames' ``module.function`` (or, when the
  event has no in-app frame at all, every frame's): line numbers, values and ids play no part;
* a message without an exception: the message template, with numbers, UUIDs, hex ids and paths
  replaced by placeholders, so ``"user 42 failed"`` and ``"user 43 failed"`` are one issue.

The key is a short hash (``group_key``); the readable title comes from the main (last) exception's
type and its culprit (the innermost in-app frame's function), e.g.
``ReadTimeout in scan_repository (discovery)``, or from the normalised message.
"""

from __future__ import annotations

import duckdb

__all__ = [
    "DEFERRED_SPANS",
    "SPAN_AGENTS",
    "SPAN_FIGURES",
    "SPAN_MINUTES",
    "SPAN_SHAPE",
    "insert_statements",
    "install_macros",
    "normalise_message",
]

# Order matters: UUIDs before hex, hex before plain numbers, paths before numbers. Hex ids are
# 8+ hex digits (shorter runs are English: "face", "bad").
_NORMALISERS = (
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
    (r"\b[0-9a-fA-F]{8,}\b", "<hex>"),
    (r"(?:[A-Za-z]:)?(?:/[\w.\-<>]+){2,}/?", "<path>"),
    (r"\b\d+(?:\.\d+)?\b", "<int>"),
)


def _normalise_sql(expr: str) -> str:
    for pattern, placeholder in _NORMALISERS:
        escaped = pattern.replace("'", "''")
        expr = f"regexp_replace({expr}, '{escaped}', '{placeholder}', 'g')"
    return expr


def normalise_message(text: str) -> str:
    """The message as grouping sees it (numbers, UUIDs, hex ids and paths replaced)."""
    con = duckdb.connect()
    try:
        install_macros(con)
        row = con.execute("SELECT wt_norm(?)", [text]).fetchone()
        return str(row[0]) if row else text
    finally:
        con.close()


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the grouping macros on ``con`` (temporary: they are code, not data)."""
    con.execute(
        "CREATE OR REPLACE TEMP MACRO wt_norm(s) AS "
        f"left({_normalise_sql('s')}, 512)"
    )
    # Frames of one exception (JSON) as "module.function" strings, in-app only or all.
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO wt_frames(x, app_only) AS list_transform(
            list_filter(
                coalesce(json_extract(x, '$.stacktrace.frames[*]'), []),
                lambda f: NOT app_only OR coalesce(TRY_CAST(json_extract(f, '$.in_app') AS BOOLEAN),
                                              false)),
            lambda f: coalesce(json_extract_string(f, '$.module'),
                          json_extract_string(f, '$.filename'), '?')
                 || '.' || coalesce(json_extract_string(f, '$.function'), '?'))
        """
    )


# The JSON list of exceptions, whichever of Sentry's two shapes the event used.
_VALUES = (
    "CASE WHEN json_type(exception) = 'ARRAY' THEN exception "
    "ELSE json_extract(exception, '$.values') END"
)
_MESSAGE = (
    "coalesce(json_extract_string(logentry, '$.message'), "
    "json_extract_string(logentry, '$.formatted'), "
    "json_extract_string(message, '$.message'), json_extract_string(message, '$.formatted'), "
    "CASE WHEN json_type(message) = 'VARCHAR' THEN json_extract_string(message, '$') END)"
)

_ERRORS = f"""
INSERT INTO errors
WITH e AS (
    SELECT *, {_VALUES} AS vals, {_MESSAGE} AS msg FROM raw
    WHERE (type IS NULL OR type IN ('event', 'error', 'default'))
      AND (exception IS NOT NULL OR logentry IS NOT NULL OR message IS NOT NULL)
), k AS (
    SELECT *, json_extract(vals, '$[*]') AS chain FROM e
), f AS (
    -- Each exception's in-app frames, extracted once: the key and the culprit both read them.
    SELECT *,
        list_last(chain) AS main,
        list_transform(chain, lambda x: wt_frames(x, true)) AS app_frames
    FROM k
), d AS (
    SELECT *,
        CASE WHEN chain IS NOT NULL AND len(chain) > 0 THEN
            array_to_string(list_transform(
                CASE WHEN len(flatten(app_frames)) > 0 THEN app_frames
                    ELSE list_transform(chain, lambda x: wt_frames(x, false)) END,
                lambda frames, i: coalesce(json_extract_string(chain[i], '$.type'), 'Error')
                    || '(' || array_to_string(frames, ',') || ')'), '|')
        ELSE 'message:' || wt_norm(coalesce(msg, '<no message>'))
        END AS default_key,
        list_last(list_last(app_frames)) AS culprit_frame,
        CASE WHEN json_type(fingerprint) = 'ARRAY'
            THEN list_transform(json_extract(fingerprint, '$[*]'),
                                lambda f: json_extract_string(f, '$')) END AS fp
    FROM f
)
SELECT
    event_id,
    wt_ts(timestamp),
    coalesce(level, 'error'),
    release,
    environment,
    coalesce(tags."service.name", server_name),
    wt_user("user"),
    coalesce(contexts.trace.data."session.id", tags."session.id"),
    contexts.trace.trace_id,
    contexts.trace.span_id,
    transaction,
    json_extract_string(main, '$.type'),
    left(coalesce(json_extract_string(main, '$.value'), msg), 300),
    TRY_CAST(json_extract(main, '$.mechanism.handled') AS BOOLEAN),
    culprit_frame,
    CASE
        WHEN main IS NOT NULL THEN coalesce(json_extract_string(main, '$.type'), 'Error')
            || CASE WHEN culprit_frame IS NOT NULL THEN
                ' in ' || split_part(culprit_frame, '.', -1)
                || ' (' || regexp_replace(culprit_frame, '\\.[^.]*$', '') || ')'
               ELSE '' END
        ELSE left(split_part(coalesce(msg, '<no message>'), chr(10), 1), 120)
    END,
    left(md5(CASE WHEN fp IS NOT NULL AND len(fp) > 0
        THEN 'fingerprint:' || array_to_string(
            list_transform(fp, lambda f:
                CASE WHEN f = '{{{{ default }}}}' THEN default_key ELSE f END),
            chr(31))
        ELSE default_key END), 16),
    logger,
    coalesce(tags.category, tags.tool, tags."test.outcome")
FROM d
"""

#: Columns computed from each line's spans while it is parsed (cheaper than passes over the
#: parsed lists later). Both passes need the shape: ``span_flags`` (1: a child whose parent is
#: not the root, so its parent has children; 2: a span time not read) and the children's summed
#: durations in seconds (a flat root's self time).
SPAN_SHAPE = """
coalesce(list_aggregate(list_transform(spans, lambda x: CASE WHEN
    x.parent_span_id IS DISTINCT FROM contexts.trace.span_id THEN 1 ELSE 0 END
    + CASE WHEN x."timestamp" IS NULL OR x.start_timestamp IS NULL THEN 2 ELSE 0 END),
    'bit_or'), 0) AS span_flags,
list_sum(list_transform(spans, lambda x: wt_ts(x."timestamp") - wt_ts(x.start_timestamp)))
    AS span_child_s
"""
#: And the first pass the roll-ups' figures: the LLM cost and tokens, the discovery outcomes (a
#: success adds 1, a failure 2^32: no transaction has 2^32 spans), the agent blocks' spans, and
#: the spans it keeps (``flat_spans``, ``nested_spans``).
SPAN_FIGURES = SPAN_SHAPE + """,
coalesce(list_sum(list_transform(spans, lambda s:
    TRY_CAST(s.data."gen_ai.cost.total_tokens" AS DOUBLE))), 0) AS span_cost,
coalesce(list_sum(list_transform(spans, lambda s: CASE WHEN s.op <> 'gen_ai.invoke_agent' THEN
    coalesce(TRY_CAST(s.data."gen_ai.usage.input_tokens" AS BIGINT), 0)
    + coalesce(TRY_CAST(s.data."gen_ai.usage.output_tokens" AS BIGINT), 0)
    END)), 0) AS span_tokens,
coalesce(list_sum(list_transform(spans, lambda s: CASE WHEN s.op = 'widget.discovery' THEN
    CASE s.data."widget.outcome" WHEN 'success' THEN 1 WHEN 'failure' THEN 4294967296 END
    END)), 0) AS span_discovery,
list_filter(spans, lambda x: x.data."gen_ai.agent.name" IS NOT NULL) AS span_agents,
-- What the first pass keeps of the spans themselves: of a flat transaction (every child's
-- parent is the root) only what its self time per minute needs; a nested one's whole, for
-- the join with the children (_NESTED_MINUTES). Keeping four fields instead of every span's
-- ids and data for millions of spans takes about a tenth off a first ingestion.
CASE WHEN span_flags & 1 = 0 THEN list_transform(spans, lambda x: {'op': x.op,
    'description': x.description, 'start_timestamp': x.start_timestamp,
    'timestamp': x."timestamp"}) END AS flat_spans,
CASE WHEN span_flags & 1 = 1 THEN spans END AS nested_spans
"""

_TRANSACTIONS = """
INSERT INTO transactions
SELECT
    event_id,
    contexts.trace.trace_id,
    contexts.trace.span_id,
    transaction,
    contexts.trace.op,
    coalesce(contexts.trace.status, 'ok'),
    wt_ts(start_timestamp),
    wt_ts(timestamp),
    (wt_ts(timestamp) - wt_ts(start_timestamp)) * 1000.0,
    release,
    environment,
    coalesce(tags."service.name", server_name),
    wt_user("user"),
    contexts.trace.data."session.id",
    span_cost,
    span_tokens,
    span_discovery % 4294967296,
    span_discovery // 4294967296
FROM raw WHERE type = 'transaction'
UNION ALL
-- Span streaming (span v2 lines): each segment span is what a transaction was.
SELECT span_id, trace_id, span_id, name, attributes."sentry.op".value, coalesce(status, 'ok'),
    wt_ts(start_timestamp), wt_ts(end_timestamp),
    (wt_ts(end_timestamp) - wt_ts(start_timestamp)) * 1000.0,
    attributes."sentry.release".value, attributes."sentry.environment".value,
    attributes."service.name".value, attributes."user.id".value, NULL,
    0, 0, 0, 0
FROM raw WHERE type = 'span' AND is_segment
"""

# Child spans plus the root (the transaction itself), each with its self time: its duration
# less its direct children's. Most transactions are flat (every child's parent is the root:
# flag 1 of ``raw.span_flags`` unset): there a child's self time is its duration and the
# root's is its own less the sum of its children's, computed inside the row. Only nested
# transactions and span v2 items need the join of each span with its children's durations
# (``_SPANS_NESTED``).
_CHILD = """
    SELECT event_id, contexts.trace.trace_id AS trace_id,
        u.s.span_id AS span_id, u.s.parent_span_id AS parent_span_id, transaction AS txn_name,
        u.s.op AS op, u.s.description AS description,
        wt_ts(u.s.start_timestamp) AS start, wt_ts(u.s.timestamp) AS ts,
        {child} AS child,
        u.s.status AS status,
        u.s.data."widget.outcome" AS outcome,
        u.s.data."gen_ai.agent.name" AS agent,
        u.s.data."widget.id" AS widget_id,
        u.s.data."gen_ai.request.model" AS model, wt_llm_cost(u.s.data) AS cost_usd,
        wt_llm_in(u.s.data) AS input_tokens, wt_llm_out(u.s.data) AS output_tokens,
        TRY_CAST(u.s.data."widget.iteration.number" AS BIGINT) AS iteration
    FROM (SELECT event_id, contexts, transaction, unnest(spans) AS s FROM raw
          WHERE type = 'transaction' AND {which}) AS u
"""
# The root span: its parent is the remote caller's span (another service's transaction),
# which is how a trace is assembled across services (insights/agent_trace.py).
_ROOT = """
    SELECT event_id, contexts.trace.trace_id, contexts.trace.span_id,
        contexts.trace.parent_span_id, transaction,
        contexts.trace.op, transaction, wt_ts(start_timestamp), wt_ts(timestamp),
        {child},
        contexts.trace.status, contexts.trace.data."widget.outcome",
        contexts.trace.data."gen_ai.agent.name", contexts.trace.data."widget.id",
        contexts.trace.data."gen_ai.request.model", wt_llm_cost(contexts.trace.data),
        wt_llm_in(contexts.trace.data), wt_llm_out(contexts.trace.data),
        TRY_CAST(contexts.trace.data."widget.iteration.number" AS BIGINT)
    FROM raw WHERE type = 'transaction' AND {which}
"""
_SPAN_ROW = """
    event_id, trace_id, span_id, parent_span_id, txn_name, op, description,
    start, ts, (ts - start) * 1000.0, greatest(0.0, (ts - start) - {child}) * 1000.0,
    status, outcome, agent, widget_id, model, cost_usd, input_tokens, output_tokens, iteration
"""

_SPANS_FLAT = (
    "INSERT INTO spans SELECT " + _SPAN_ROW.format(child="coalesce(child, 0.0)") + " FROM ("
    + _CHILD.format(child="0.0", which="span_flags & 1 = 0")
    + " UNION ALL "
    + _ROOT.format(child="span_child_s", which="span_flags & 1 = 0")
    + ")"
)

# Nested transactions and span v2 lines: each span joined with its children's durations.
_NESTED = """
INSERT INTO spans WITH s AS ({rows}), c AS (
    SELECT event_id, parent_span_id, sum(ts - start) AS child FROM s
    WHERE parent_span_id IS NOT NULL GROUP BY ALL
)
SELECT """ + (
    _SPAN_ROW.format(child="coalesce(c.child, 0.0)").replace("event_id,", "s.event_id,", 1)
    .replace("span_id, parent_span_id", "s.span_id, s.parent_span_id", 1)
) + """
FROM s LEFT JOIN c ON c.event_id = s.event_id AND c.parent_span_id = s.span_id
"""

_SPANS_NESTED = _NESTED.format(
    rows=_CHILD.format(child="NULL", which="span_flags & 1 = 1")
    + " UNION ALL "
    + _ROOT.format(child="NULL", which="span_flags & 1 = 1")
)

# Span v2 lines are rows of their own (no list to parse): written at once.
_SPANS_V2 = _NESTED.format(rows="""
    SELECT coalesce(attributes."sentry.segment.id".value, span_id) AS event_id, trace_id,
        span_id,
        CASE WHEN NOT coalesce(is_segment, false) THEN parent_span_id END AS parent_span_id,
        coalesce(attributes."sentry.segment.name".value, CASE WHEN is_segment THEN name END)
            AS txn_name,
        attributes."sentry.op".value AS op, name AS description,
        wt_ts(start_timestamp) AS start, wt_ts(end_timestamp) AS ts, NULL AS child, status,
        attributes."widget.outcome".value AS outcome,
        attributes."gen_ai.agent.name".value AS agent,
        attributes."widget.id".value AS widget_id,
        attributes."gen_ai.request.model".value AS model,
        TRY_CAST(coalesce(attributes."gen_ai.cost.total_tokens".value,
            attributes."widget.cost.usd".value) AS DOUBLE) AS cost_usd,
        TRY_CAST(coalesce(attributes."gen_ai.usage.input_tokens".value,
            attributes."widget.usage.input_tokens".value) AS BIGINT) AS input_tokens,
        TRY_CAST(coalesce(attributes."gen_ai.usage.output_tokens".value,
            attributes."widget.usage.output_tokens".value) AS BIGINT) AS output_tokens,
        TRY_CAST(attributes."widget.iteration.number".value AS BIGINT) AS iteration
    FROM raw WHERE type = 'span'
""")

#: The roll-up of the spans just inserted (rowid >= the count before), see ``span_minutes``.
SPAN_MINUTES = """
INSERT INTO span_minutes
SELECT floor(ts / 60) * 60, txn_name, op, description, sum(self_ms) FROM spans
WHERE rowid >= ? GROUP BY ALL
"""

# A transaction's spans are most of a log's rows; their ``spans`` rows are written later, on
# the first query that reads that table (``Store.ensure_spans``). What the standup needs from
# them is derived now, straight from the parsed lines, without a row per span: the self time
# per minute and the agent blocks' spans. In a flat transaction a child's self time is its
# duration and the root's its own less its children's; a nested one needs the join.
_FLAT_MINUTES = """
INSERT INTO span_minutes
SELECT floor(ts / 60) * 60, txn_name, op, description, sum(self_ms) FROM (
    SELECT transaction AS txn_name, u.s.op AS op, u.s.description AS description,
        wt_ts(u.s."timestamp") AS ts,
        greatest(0.0, wt_ts(u.s."timestamp") - wt_ts(u.s.start_timestamp)) * 1000.0 AS self_ms
    FROM (SELECT transaction, unnest(flat_spans) AS s FROM raw
          WHERE type = 'transaction' AND span_flags & 1 = 0) AS u
    UNION ALL
    SELECT transaction, contexts.trace.op, transaction, wt_ts(timestamp),
        greatest(0.0, (wt_ts(timestamp) - wt_ts(start_timestamp)) - coalesce(span_child_s, 0.0))
        * 1000.0
    FROM raw WHERE type = 'transaction' AND span_flags & 1 = 0
) GROUP BY ALL
"""

_NESTED_MINUTES = """
INSERT INTO span_minutes
WITH s AS (
    SELECT event_id, u.s.span_id AS span_id, u.s.parent_span_id AS parent_span_id,
        transaction AS txn_name, u.s.op AS op, u.s.description AS description,
        wt_ts(u.s.start_timestamp) AS start, wt_ts(u.s."timestamp") AS ts
    FROM (SELECT event_id, transaction, unnest(nested_spans) AS s FROM raw
          WHERE type = 'transaction' AND span_flags & 1 = 1) AS u
    UNION ALL
    SELECT event_id, contexts.trace.span_id, NULL, transaction, contexts.trace.op, transaction,
        wt_ts(start_timestamp), wt_ts(timestamp)
    FROM raw WHERE type = 'transaction' AND span_flags & 1 = 1
), c AS (
    SELECT event_id, parent_span_id, sum(ts - start) AS child FROM s
    WHERE parent_span_id IS NOT NULL GROUP BY ALL
)
SELECT floor(s.ts / 60) * 60, s.txn_name, s.op, s.description,
    sum(greatest(0.0, (s.ts - s.start) - coalesce(c.child, 0.0)) * 1000.0)
FROM s LEFT JOIN c ON c.event_id = s.event_id AND c.parent_span_id = s.span_id
GROUP BY ALL
"""

_AGENTS = """
INSERT INTO agent_spans
SELECT event_id, contexts.trace.trace_id, u.s.op, u.s.data."gen_ai.agent.name",
    u.s.data."widget.outcome"
FROM (SELECT event_id, contexts, unnest(span_agents) AS s
      FROM raw WHERE type = 'transaction') AS u
UNION ALL
SELECT event_id, contexts.trace.trace_id, contexts.trace.op,
    contexts.trace.data."gen_ai.agent.name", contexts.trace.data."widget.outcome"
FROM raw WHERE type = 'transaction' AND contexts.trace.data."gen_ai.agent.name" IS NOT NULL
"""

#: The agent spans among the rows just inserted into ``spans`` (rowid >= the count before).
SPAN_AGENTS = """
INSERT INTO agent_spans
SELECT event_id, trace_id, op, agent, outcome FROM spans
WHERE rowid >= ? AND agent IS NOT NULL
"""

#: The transactions' ``spans`` rows, from a ``raw`` table of their lines read with all span
#: fields (:func:`spans_columns` with ``full``); see ``_FLAT_MINUTES``.
DEFERRED_SPANS = (_SPANS_FLAT, _SPANS_NESTED)

_BREADCRUMBS = """
INSERT INTO breadcrumbs
SELECT event_id, wt_user("user"), wt_ts(b."timestamp"), b.category, b.message, b.level
FROM (SELECT event_id, "user", unnest(breadcrumbs."values") AS b FROM raw
      WHERE breadcrumbs IS NOT NULL)
"""

_DEPLOYS = """
INSERT INTO deploys
SELECT release, coalesce(environment, 'production'), wt_ts(timestamp) FROM raw
WHERE type = 'deploy' AND release IS NOT NULL
"""

# Release-health session updates (the `session` item payload, one per line).
_SESSIONS = """
INSERT INTO sessions
SELECT sid, did, coalesce(release, attrs.release), coalesce(environment, attrs.environment),
    status, wt_ts(started), wt_ts(timestamp), TRY_CAST(errors AS BIGINT), name
FROM raw WHERE type = 'session' OR (sid IS NOT NULL AND type IS NULL)
"""

# Request sessions aggregated per minute (the `sessions` item payload: attrs + aggregates).
_SESSION_AGGREGATES = """
INSERT INTO session_aggregates
SELECT wt_ts(a.started), attrs.release, coalesce(attrs.environment, 'production'),
    coalesce(a.exited, 0), coalesce(a.errored, 0), coalesce(a.crashed, 0),
    coalesce(a.abnormal, 0)
FROM (SELECT attrs, unnest(aggregates) AS a FROM raw
      WHERE type = 'sessions' AND aggregates IS NOT NULL)
"""

_LOGS = """
INSERT INTO logs
SELECT wt_ts(timestamp), level, body, trace_id, attributes."sentry.release".value,
    attributes."service.name".value
FROM raw WHERE type = 'log'
"""


def insert_statements() -> tuple[str, ...]:
    """The statements that move the temporary ``raw`` table into the derived tables (all but
    the transactions' ``spans`` rows: :data:`DEFERRED_SPANS`, run later)."""
    return (
        _ERRORS, _TRANSACTIONS, _FLAT_MINUTES, _NESTED_MINUTES, _AGENTS, _SPANS_V2, _BREADCRUMBS,
        _DEPLOYS, _SESSIONS, _SESSION_AGGREGATES, _LOGS,
    )
