"""The wire contract shared by server and agent: pydantic models and pure parsers only.

The names below load on first use (PEP 562), so that importing a pydantic-free submodule
(`protocol.names`, `protocol.versions`, `protocol.errors`) does not load pydantic: the
resident agent never imports the models.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uptend.protocol.admin_api import (
        Agent,
        AgentApp,
        AgentDetail,
        AgentPage,
        AppSummary,
        FleetSummary,
        FreezeSet,
        FreezeView,
        Group,
        GroupApp,
        GroupSet,
        Release,
        ReportView,
    )
    from uptend.protocol.agent_api import (
        AppDirective,
        AppState,
        AppStatus,
        CheckIn,
        Command,
        CommandAck,
        CommandOutcome,
        Directives,
        EnrollRequest,
        EnrollResponse,
        Report,
        WaitAnswer,
        WaitRequest,
    )
    from uptend.protocol.commands import CommandAction, CommandSend, CommandState, CommandView
    from uptend.protocol.credentials import (
        AgentRef,
        TokenCreate,
        TokenCreated,
        TokenInfo,
        TokenRole,
        TokenState,
    )
    from uptend.protocol.errors import ErrorBody, error_from_body
    from uptend.protocol.reasons import (
        AutoUpdateOff,
        DeferredPrecondition,
        Failed,
        Frozen,
        NeverCheckedIn,
        NoRelease,
        NotAssigned,
        Offline,
        Outcome,
        OutsideWindow,
        Reason,
        ReasonCode,
        UpdatePending,
        Updating,
        UpToDate,
    )

_MODULES = {
    "admin_api": (
        "Agent AgentApp AgentDetail AgentPage AppSummary FleetSummary FreezeSet FreezeView Group"
        " GroupApp GroupSet Release ReportView"
    ),
    "agent_api": (
        "AppDirective AppState AppStatus CheckIn Command CommandAck CommandOutcome Directives"
        " EnrollRequest EnrollResponse Report WaitAnswer WaitRequest"
    ),
    "commands": "CommandAction CommandSend CommandState CommandView",
    "credentials": "AgentRef TokenCreate TokenCreated TokenInfo TokenRole TokenState",
    "errors": "ErrorBody error_from_body",
    "reasons": (
        "AutoUpdateOff DeferredPrecondition Failed Frozen NeverCheckedIn NoRelease NotAssigned"
        " Offline Outcome OutsideWindow Reason ReasonCode UpdatePending Updating UpToDate"
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first use (and keep it)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AgentApp",
    "AgentDetail",
    "AgentPage",
    "AgentRef",
    "AppDirective",
    "AppState",
    "AppStatus",
    "AppSummary",
    "AutoUpdateOff",
    "CheckIn",
    "Command",
    "CommandAck",
    "CommandAction",
    "CommandOutcome",
    "CommandSend",
    "CommandState",
    "CommandView",
    "DeferredPrecondition",
    "Directives",
    "EnrollRequest",
    "EnrollResponse",
    "ErrorBody",
    "Failed",
    "FleetSummary",
    "FreezeSet",
    "FreezeView",
    "Frozen",
    "Group",
    "GroupApp",
    "GroupSet",
    "NeverCheckedIn",
    "NoRelease",
    "NotAssigned",
    "Offline",
    "Outcome",
    "OutsideWindow",
    "Reason",
    "ReasonCode",
    "Release",
    "Report",
    "ReportView",
    "TokenCreate",
    "TokenCreated",
    "TokenInfo",
    "TokenRole",
    "TokenState",
    "UpToDate",
    "UpdatePending",
    "Updating",
    "WaitAnswer",
    "WaitRequest",
    "error_from_body",
]
