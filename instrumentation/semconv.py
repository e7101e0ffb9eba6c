"""Every attribute name, span name format and op that widgettrace emits, in one place.

Standard names follow the OpenTelemetry semantic conventions (HTTP, MCP, GenAI, user). The
``widget.*`` names are ours; the README's "Widget conventions" section documents each one and a
test keeps the two in sync. Code never spells an attribute name as a string literal elsewhere.
"""

from __future__ import annotations

from typing import Final

# --- MCP (semantic-conventions-genai, docs/gen-ai/mcp.md) -----------------------------------
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_SESSION_ID: Final = "mcp.session.id"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
MCP_RESOURCE_URI: Final = "mcp.resource.uri"
JSONRPC_REQUEST_ID: Final = "jsonrpc.request.id"
JSONRPC_PROTOCOL_VERSION: Final = "jsonrpc.protocol.version"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
NETWORK_TRANSPORT: Final = "network.transport"
NETWORK_PROTOCOL_NAME: Final = "network.protocol.name"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"
ERROR_TYPE: Final = "error.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
MCP_CLIENT_OPERATION_DURATION: Final = "mcp.client.operation.duration"
MCP_SERVER_OPERATION_DURATION: Final = "mcp.server.operation.duration"
MCP_CLIENT_SESSION_DURATION: Final = "mcp.client.session.duration"
MCP_SERVER_SESSION_DURATION: Final = "mcp.server.session.duration"
# Ours (no convention yet): a notifications/progress becomes an event on the request's span.
MCP_PROGRESS_EVENT: Final = "mcp.progress"
MCP_PROGRESS_VALUE: Final = "mcp.progress.value"
MCP_PROGRESS_TOTAL: Final = "mcp.progress.total"
MCP_PROGRESS_MESSAGE: Final = "mcp.progress.message"

# --- Sentry's names beside the OTel ones (getsentry/sentry-conventions) ----------------------
# Sentry's MCP pages query these; the conventions list mcp.tool.name, mcp.prompt.name and
# mcp.request.id as "backfill" aliases of the OTel names (send both), and mcp.transport and
# mcp.client.name as Sentry's own. tests/test_sentry_names.py checks each against the published
# sentry-conventions package.
MCP_TOOL_NAME: Final = "mcp.tool.name"
MCP_PROMPT_NAME: Final = "mcp.prompt.name"
MCP_REQUEST_ID: Final = "mcp.request.id"
#: The MCP transport implementation: stdio, http (streamable HTTP), sse, memory or direct.
MCP_TRANSPORT: Final = "mcp.transport"
#: The MCP client implementation's name, as declared in its clientInfo.
MCP_CLIENT_NAME: Final = "mcp.client.name"
#: (OTel name, Sentry's backfilled alias) pairs, both set on a span.
SENTRY_MCP_ALIASES: Final = (
    ("gen_ai.tool.name", MCP_TOOL_NAME),
    ("gen_ai.prompt.name", MCP_PROMPT_NAME),
    (JSONRPC_REQUEST_ID, MCP_REQUEST_ID),
)
#: Sentry's span op, when the span's attributes alone cannot tell it (notification direction).
SENTRY_OP: Final = "sentry.op"
OP_MCP_NOTIFICATION_CLIENT_TO_SERVER: Final = "mcp.notification.client_to_server"
OP_MCP_NOTIFICATION_SERVER_TO_CLIENT: Final = "mcp.notification.server_to_client"

# --- GenAI (semantic-conventions-genai) ------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
# OTel defines no cost attribute; Sentry's AI views read these (and overwrite them for models
# Sentry prices itself).
GEN_AI_COST_INPUT_TOKENS: Final = "gen_ai.cost.input_tokens"
GEN_AI_COST_OUTPUT_TOKENS: Final = "gen_ai.cost.output_tokens"
GEN_AI_COST_TOTAL_TOKENS: Final = "gen_ai.cost.total_tokens"

# --- User (semantic conventions' user.* attributes) ------------------------------------------
USER_ID: Final = "user.id"
USER_EMAIL: Final = "user.email"
USER_NAME: Final = "user.name"
USER_FULL_NAME: Final = "user.full_name"
USER_ROLES: Final = "user.roles"

# --- Exceptions (OTel span event conventions) -------------------------------------------------
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# --- Sentry mapping (scope API and span processor) ---------------------------------------------
# HTTP and DB, current and old conventions (the processor reads both).
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_METHOD_OLD: Final = "http.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_STATUS_CODE_OLD: Final = "http.status_code"
HTTP_TARGET_OLD: Final = "http.target"
HTTP_URL_OLD: Final = "http.url"
URL_FULL: Final = "url.full"
URL_PATH: Final = "url.path"
NET_PEER_NAME_OLD: Final = "net.peer.name"
DB_SYSTEM_NAME: Final = "db.system.name"
DB_SYSTEM_OLD: Final = "db.system"
DB_QUERY_TEXT: Final = "db.query.text"
DB_STATEMENT_OLD: Final = "db.statement"
MESSAGING_SYSTEM: Final = "messaging.system"
RPC_SYSTEM: Final = "rpc.system"
SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT_OLD: Final = "deployment.environment"
# scope API (widgettrace.instrumentation.scope): tags, contexts, breadcrumbs, messages.
WIDGET_TAG_PREFIX: Final = "widget.tag."
WIDGET_CONTEXT_PREFIX: Final = "widget.context."
BREADCRUMB_EVENT: Final = "breadcrumb"
BREADCRUMB_MESSAGE: Final = "breadcrumb.message"
BREADCRUMB_CATEGORY: Final = "breadcrumb.category"
BREADCRUMB_LEVEL: Final = "breadcrumb.level"
BREADCRUMB_TYPE: Final = "breadcrumb.type"
BREADCRUMB_DATA_PREFIX: Final = "breadcrumb.data."
MESSAGE_EVENT: Final = "message"
MESSAGE_TEXT: Final = "message.text"
MESSAGE_LEVEL: Final = "message.level"

# --- widgettrace's own (widget.*) --------------------------------------------------------------
# Section owned by the domain-tracing work; each name documented in the README.
# Standard code attribute set on function spans (OTel code.* conventions).
CODE_FUNCTION_NAME: Final = "code.function.name"

#: The operation kind of a widgettrace span; the Sentry processor maps it onto the span's op.
WIDGET_OP: Final = "widget.op"
#: How a discovery, conversion, registry, iteration, block, LLM or tool step ended:
#: "success" or "failure" (set automatically on exit unless the code set it, e.g. "partial").
WIDGET_OUTCOME: Final = "widget.outcome"

# Discovery (search model hubs and Git repositories for widgets).
WIDGET_DISCOVERY_SOURCE: Final = "widget.discovery.source"
WIDGET_DISCOVERY_QUERY: Final = "widget.discovery.query"
WIDGET_DISCOVERY_WIDGETS_FOUND: Final = "widget.discovery.widgets_found"
WIDGET_DISCOVERY_REPOSITORIES_SCANNED: Final = "widget.discovery.repositories_scanned"

# Conversion (parse, validate, infer, write) of one widget.
WIDGET_ID: Final = "widget.id"
WIDGET_TYPE: Final = "widget.type"
WIDGET_CONVERSION_STAGE: Final = "widget.conversion.stage"

# Registry operations.
WIDGET_REGISTRY_OPERATION: Final = "widget.registry.operation"
WIDGET_REGISTRY_NAME: Final = "widget.registry.name"

# Cascade orchestrator.
WIDGET_ITERATION_NUMBER: Final = "widget.iteration.number"
WIDGET_CASCADE_NAME: Final = "widget.cascade.name"

# Roll-ups written by the API on agent-block and iteration spans (and, as widget.trace.*, on the
# span the outermost orchestrator span started under). Per-call cost stays in gen_ai.cost.* on
# the LLM span only: Sentry reads it per span, so an aggregate over spans never counts it twice.
WIDGET_COST_USD: Final = "widget.cost.usd"
WIDGET_COST_UNPRICED_CALLS: Final = "widget.cost.unpriced_calls"
WIDGET_USAGE_INPUT_TOKENS: Final = "widget.usage.input_tokens"
WIDGET_USAGE_OUTPUT_TOKENS: Final = "widget.usage.output_tokens"
WIDGET_LLM_CALLS: Final = "widget.llm.calls"
WIDGET_TRACE_COST_USD: Final = "widget.trace.cost.usd"
WIDGET_TRACE_COST_UNPRICED_CALLS: Final = "widget.trace.cost.unpriced_calls"
WIDGET_TRACE_USAGE_INPUT_TOKENS: Final = "widget.trace.usage.input_tokens"
WIDGET_TRACE_USAGE_OUTPUT_TOKENS: Final = "widget.trace.usage.output_tokens"
WIDGET_TRACE_LLM_CALLS: Final = "widget.trace.llm.calls"

# Values of widget.op.
WIDGET_OP_FUNCTION: Final = "function"
WIDGET_OP_DISCOVERY: Final = "widget.discovery"
WIDGET_OP_CONVERSION: Final = "widget.conversion"
WIDGET_OP_REGISTRY: Final = "widget.registry"
WIDGET_OP_ITERATION: Final = "widget.iteration"
WIDGET_OP_INVOKE_AGENT: Final = "gen_ai.invoke_agent"
WIDGET_OP_CHAT: Final = "gen_ai.chat"
WIDGET_OP_EXECUTE_TOOL: Final = "gen_ai.execute_tool"

# Values of widget.outcome.
WIDGET_OUTCOME_SUCCESS: Final = "success"
WIDGET_OUTCOME_FAILURE: Final = "failure"

# --- Tests, CI and findings (OTel test.*, cicd.*, vcs.* conventions; widget.test.* ours) --------
TEST_CASE_NAME: Final = "test.case.name"
TEST_CASE_RESULT_STATUS: Final = "test.case.result.status"  # pass | fail
TEST_SUITE_NAME: Final = "test.suite.name"
TEST_SUITE_RUN_STATUS: Final = "test.suite.run.status"  # success | failure | aborted
CODE_FILE_PATH: Final = "code.file.path"
CODE_LINE_NUMBER: Final = "code.line.number"
CICD_PIPELINE_NAME: Final = "cicd.pipeline.name"
CICD_PIPELINE_RUN_ID: Final = "cicd.pipeline.run.id"
CICD_PIPELINE_RUN_URL_FULL: Final = "cicd.pipeline.run.url.full"
VCS_REF_HEAD_NAME: Final = "vcs.ref.head.name"
VCS_REF_HEAD_REVISION: Final = "vcs.ref.head.revision"
VCS_REPOSITORY_URL_FULL: Final = "vcs.repository.url.full"
#: Ours: passed, failed, error, skipped, xfailed or xpassed (pytest's own words).
WIDGET_TEST_OUTCOME: Final = "widget.test.outcome"
#: Ours: the parametrisation id (``[a-1]``'s ``a-1``) and each parameter's repr.
WIDGET_TEST_PARAMETERS: Final = "widget.test.parameters"
WIDGET_TEST_PARAM_PREFIX: Final = "widget.test.param."
#: Ours: how many times pytest-rerunfailures re-ran the test; flaky = failed, then passed.
WIDGET_TEST_RERUNS: Final = "widget.test.reruns"
WIDGET_TEST_FLAKY: Final = "widget.test.flaky"
#: Ours, on the session span: tests per outcome (widget.test.count.failed, ...).
WIDGET_TEST_COUNT_PREFIX: Final = "widget.test.count."
#: Ours: the pytest-xdist worker (gw0, gw1, ...) that ran the test.
WIDGET_TEST_WORKER: Final = "widget.test.worker"
#: Ours: github, gitlab or generic (CI=true), when the run is on a CI machine.
WIDGET_CI_PROVIDER: Final = "widget.ci.provider"
WIDGET_OP_TEST: Final = "test"
WIDGET_OP_TEST_SESSION: Final = "test.session"
