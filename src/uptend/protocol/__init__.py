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
        LabelChange,
        PackageView,
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
        ConcurrencyCap,
        DeferredPrecondition,
        Failed,
        Floor,
        Frozen,
        Halted,
        NeverCheckedIn,
        NoRelease,
        NotAssigned,
        Offline,
        Outcome,
        OutsideWindow,
        Pinned,
        Reason,
        ReasonCode,
        UpdatePending,
        Updating,
        UpToDate,
        WaitingWave,
    )

_MODULES = {
    "admin_api": (
        "Agent AgentApp AgentDetail AgentPage AppSummary FleetSummary FreezeSet FreezeView Group"
        " GroupApp GroupSet LabelChange PackageView Release ReportView"
    ),
    "agent_api": (
        "AppDirective AppState AppStatus CheckIn Command CommandAck CommandOutcome Directives"
        " EnrollRequest EnrollResponse Report WaitAnswer WaitRequest"
    ),
    "commands": "CommandAction CommandSend CommandState CommandView",
    "credentials": "AgentRef TokenCreate TokenCreated TokenInfo TokenRole TokenState",
    "errors": "ErrorBody error_from_body",
    "reasons": (
        "AutoUpdateOff ConcurrencyCap DeferredPrecondition Failed Floor Frozen Halted"
        " NeverCheckedIn NoRelease NotAssigned Offline Outcome OutsideWindow Pinned Reason"
        " ReasonCode UpToDate UpdatePending Updating WaitingWave"
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
    "ConcurrencyCap",
    "DeferredPrecondition",
    "Directives",
    "EnrollRequest",
    "EnrollResponse",
    "ErrorBody",
    "Failed",
    "FleetSummary",
    "Floor",
    "FreezeSet",
    "FreezeView",
    "Frozen",
    "Group",
    "GroupApp",
    "GroupSet",
    "Halted",
    "LabelChange",
    "NeverCheckedIn",
    "NoRelease",
    "NotAssigned",
    "Offline",
    "Outcome",
    "OutsideWindow",
    "PackageView",
    "Pinned",
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
    "WaitingWave",
    "error_from_body",
]
