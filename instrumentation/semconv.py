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

# --- widgettrace's own (widget.*) --------------------------------------------------------------
# Section owned by the domain-tracing work; each name documented in the README.
