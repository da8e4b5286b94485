"""The one base class for mistakes a user can fix: bad config values, bad data files, impossible requests.

The command line prints these as one clear message (no traceback) and exits with status 2; anything
else is a bug in causal-engine and keeps its traceback.
"""

import importlib.util


class UserError(ValueError):
    """Raised for input the user can fix; the message names the field, the value and the fix."""


class MissingExtraError(UserError):
    """An optional package that a requested feature needs is not installed."""


# The import name of each package of the `baselines` extra (pyproject.toml) whose distribution name differs.
_DISTRIBUTIONS = {"causallearn": "causal-learn", "castle": "gcastle"}


def require_extra(needed_for: str, *packages: str) -> None:
    """Stop with a `MissingExtraError` naming `needed_for`, the missing package and the install command unless
    every one of `packages` (import names, e.g. "causallearn") is installed.

    The classical baselines, the benchmarks' outside generators and metrics are the `baselines` extra, imported
    only inside the functions that use them, so that `pip install causal-engine` runs every system without them;
    a function that needs one calls this first, so a user without it reads what to install, not a traceback."""
    missing = [_DISTRIBUTIONS.get(p, p) for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingExtraError(
            f"{needed_for} needs {', '.join(missing)} (the `baselines` extra): pip install 'causal-engine[baselines]' "
            "(in a clone: pip install -e '.[baselines]', or `make setup`, which installs every extra)."
        )
