"""Errors the reward pool and service raise; each message says what went wrong and what to do.

They subclass the package's errors (:mod:`openrlhf_visualprm.errors`) and ordinary Python
exceptions, so a caller that does not know this module can still catch them (``ValueError`` for
bad input, ``TimeoutError`` for timeouts). A bad request is an :class:`InputError` (HTTP 400; a
neutral reward in an RL step); a timeout, a full queue or a failed worker stops an RL run. Ray
re-raises an actor's exception in the caller as a subclass of the original, so
``except RewardTimeoutError`` works across processes too.
"""

from __future__ import annotations

from openrlhf_visualprm.errors import InputError, VisualPRMError


class BadRequestError(InputError):
    """The request itself is wrong (missing field, bad image, path outside roots); fix the input."""


class RequestTooLargeError(BadRequestError):
    """The request or one of its images is over a configured size limit."""


class RewardTimeoutError(VisualPRMError, TimeoutError):
    """A scoring request did not finish within its per-request timeout."""


class PoolBusyError(VisualPRMError, RuntimeError):
    """The pool's bounded queue stayed full for the whole wait: the caller must slow down or retry."""


class WorkerFailedError(VisualPRMError, RuntimeError):
    """Scoring failed inside a worker (bad model output, OOM on a single response, no live worker)."""
