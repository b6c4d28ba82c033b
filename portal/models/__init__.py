from .connections import Connection
from .tokens import PersonalToken

__all__ = ["Connection", "PersonalToken"]
