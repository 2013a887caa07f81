"""The package's error types (placeholder until the foundation branch's ``errors.py`` lands).

``InputError`` marks a bad *sample* (unreadable label, image missing or outside the roots): the
reward runtime turns it into the documented neutral reward for the components it breaks and
counts it. Every other exception stops the run.
"""

from __future__ import annotations


class VisualPRMError(Exception):
    """Base of the package's own errors."""


class InputError(VisualPRMError, ValueError):
    """A bad sample: neutral reward for the components it breaks, counted, never silent."""
