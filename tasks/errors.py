"""Tasks raise the suite-wide `UserInputError` (defined in `models.errors`)."""

from models.errors import UserInputError

__all__ = ["UserInputError"]
