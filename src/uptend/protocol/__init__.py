"""The wire contract shared by server and agent: pydantic models and pure parsers only."""

from uptend.protocol.admin_api import Agent, AgentApp, ErrorBody, Group, GroupApp, GroupSet, Release
from uptend.protocol.agent_api import (
    AppDirective,
    AppState,
    AppStatus,
    CheckIn,
    Directives,
    EnrollRequest,
    EnrollResponse,
    Report,
)

__all__ = [
    "Agent",
    "AgentApp",
    "AppDirective",
    "AppState",
    "AppStatus",
    "CheckIn",
    "Directives",
    "EnrollRequest",
    "EnrollResponse",
    "ErrorBody",
    "Group",
    "GroupApp",
    "GroupSet",
    "Release",
    "Report",
]
