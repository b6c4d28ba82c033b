from .access import Grant, Quarantine, Role, SecurityRevision, ToolCatalogEntry
from .connections import Connection
from .tokens import PersonalToken

__all__ = ["Connection", "Grant", "PersonalToken", "Quarantine", "Role", "SecurityRevision",
           "ToolCatalogEntry"]
