"""The one base class for mistakes a user can fix; the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: an unknown name, an unreadable or mismatched file, an impossible setting."""
