"""The MCP server: tools (learning.mcp.tools), the SDK server (server), /mcp (http)."""
