from .access import Grant, Quarantine, Role, SecurityRevision, ToolCatalogEntry
from .api import ApiToken, PortalSession
from .approvals import ApprovalVote, PolicyVersion, QueryApproval
from .connections import Connection
from .incidents import Incident
from .jobs import UpstreamJob
from .requests import AccessRequest
from .sessions import GatewaySession
from .tokens import PersonalToken

__all__ = ["AccessRequest", "ApiToken", "ApprovalVote", "Connection", "GatewaySession", "Grant",
           "Incident", "PersonalToken", "PolicyVersion", "PortalSession", "Quarantine",
           "QueryApproval", "Role", "SecurityRevision", "ToolCatalogEntry", "UpstreamJob"]
