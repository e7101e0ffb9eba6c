"""MCP test peers for tests/test_mcp_*.py: one demo server, a stdio entry point, uvicorn runner."""
