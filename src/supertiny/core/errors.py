"""The one base of every error a user can act on, so the CLI catches them in one place.

    try:
        ...
    except SupertinyError as exc:       # cli.py, through core/exits.py `run_verb`
        print(f"error: {exc}")

Each error class keeps its other base (``ConfigError`` is still a ``ValueError``,
``ModelNotFoundError`` a ``FileNotFoundError``, ``MissingExtra`` an ``ImportError``), so code
that catches those goes on catching them. Errors that are answers to an HTTP client (the
serve package's ``RequestError``, ``LimitError``, ``APIError``) and control-flow exceptions are
not user errors and do not derive from it.
"""

from __future__ import annotations


class SupertinyError(Exception):
    """An error in user input or in the environment, with a message that says what to do."""


class MissingExtra(SupertinyError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that adds it."""
