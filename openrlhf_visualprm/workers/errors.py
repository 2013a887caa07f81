"""Errors the reward pool and service raise; each message says what went wrong and what to do.

They subclass the package's errors (:mod:`openrlhf_visualprm.errors`) and ordinary Python
exceptions, so a caller that does not know this module can still catch them (``ValueError`` for
bad input, ``TimeoutError`` for timeouts). A bad request is an :class:`InputError` (HTTP 400; a
neutral reward in an RL step); a timeout, a full queue or a failed worker stops an RL run. Ray
re-raises an actor's exception in the caller as a subclass of the original, so
``except RewardTimeoutError`` works across processes too.
"""

from __future__ import annotations

from openrlhf_visualprm.errors import InputError, RequestTooLargeError, VisualPRMError

__all__ = [
    "BadRequestError",
    "PoolBusyError",
    "RequestTooLargeError",
    "RewardTimeoutError",
    "WorkerFailedError",
]


class BadRequestError(InputError):
    """The request itself is wrong (not JSON of the protocol's shape); fix the input. A bad group
    is an :class:`InputError` from the one preparation (:mod:`openrlhf_visualprm.rewards.groups`);
    a size limit, :class:`~openrlhf_visualprm.errors.RequestTooLargeError` (413)."""


class RewardTimeoutError(VisualPRMError, TimeoutError):
    """A scoring request did not finish within its per-request timeout."""


class PoolBusyError(VisualPRMError, RuntimeError):
    """The pool's bounded queue stayed full for the whole wait: the caller must slow down or retry."""


class WorkerFailedError(VisualPRMError, RuntimeError):
    """Scoring failed inside a worker (bad model output, OOM on a single response, no live worker)."""
