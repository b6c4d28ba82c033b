from .access import Grant, Quarantine, Role, SecurityRevision, ToolCatalogEntry
from .approvals import ApprovalVote, PolicyVersion, QueryApproval
from .connections import Connection
from .sessions import GatewaySession
from .tokens import PersonalToken

__all__ = ["ApprovalVote", "Connection", "GatewaySession", "Grant", "PersonalToken",
           "PolicyVersion", "QueryApproval", "Quarantine", "Role", "SecurityRevision",
           "ToolCatalogEntry"]
