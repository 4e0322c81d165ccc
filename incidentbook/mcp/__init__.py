"""incidentbook's read-only, redacted investigation tools for any MCP client (`incidentbook mcp`)."""

from incidentbook.mcp.tools import TOOL_NAMES, McpTools, Result, build_tools, tool_definitions

__all__ = ["TOOL_NAMES", "McpTools", "Result", "build_tools", "tool_definitions"]
