"""The one base class for mistakes a user can fix: bad config values, bad data files, impossible requests.

The command line prints these as one clear message (no traceback) and exits with status 2; anything
else is a bug in causal-engine and keeps its traceback.
"""


class UserError(ValueError):
    """Raised for input the user can fix; the message names the field, the value and the fix."""
