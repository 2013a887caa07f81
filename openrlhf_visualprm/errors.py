"""The package's errors, in two families that decide what happens to an RL run.

- :class:`InputError`: one *sample* is bad (unreadable or missing image, image outside the
  roots, malformed label, label without the field a component needs, a query whose response
  cannot be found). Inside reward scoring this is the **only** error that becomes a neutral
  reward, and only for the components that need the broken part (:attr:`InputError.part`):
  the outcome check needs no image, so it still scores a sample whose image is missing.
- everything else (:class:`ConfigError`, :class:`ModelError`, :class:`HostError`, and any
  ordinary Python error from a bug) stops the run with its message. Training on zeros with exit
  code 0 costs users days of GPU time; a crash costs them minutes.

Every class subclasses the Python exception a caller that does not know this module would
catch (``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so existing ``except`` clauses
keep working; the reward runtime must catch :class:`InputError` only.
"""

from __future__ import annotations

# The parts of a sample a reward component can need; an InputError names the one it broke.
PART_LABEL = "label"  # the label column as a whole (undecodable JSON, wrong type)
PART_IMAGE = "image"  # no image, unreadable image, image outside the roots, refused URL
PART_QUESTION = "question"  # no usable question text
PART_RESPONSE = "response"  # the response cannot be separated from the query
PART_TRUTH = "truth"  # no ground-truth answer in the label
PART_REFERENCE = "reference"  # no reference response (judge schedule "reference")
PARTS = (PART_LABEL, PART_IMAGE, PART_QUESTION, PART_RESPONSE, PART_TRUTH, PART_REFERENCE)


class VisualPRMError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(VisualPRMError, ValueError):
    """A bad sample: neutral reward for the components that need :attr:`part`, counted, logged.

    ``part`` is one of :data:`PARTS`. ``reason`` is a short stable tag for counting (the guard
    names the most common ones); the message says which input and what to do.
    """

    def __init__(self, message: str, part: str = PART_LABEL, reason: str | None = None) -> None:
        if part not in PARTS:
            raise ValueError(f"InputError part must be one of {PARTS}, got {part!r}")
        super().__init__(message)
        self.part = part
        self.reason = reason or part

    def __reduce__(self):  # keep part/reason across Ray / pickling
        return (type(self), (str(self), self.part, self.reason))


class ConfigError(VisualPRMError, ValueError):
    """A configuration is wrong (flag, option, env var, request config): stop and say which."""


class FlagError(ConfigError):
    """A bad command line; :attr:`flag` names the offending flag when there is one.

    One class for the launcher, the plugin's own flags and OpenRLHF's parser, which used to have
    three identical ones.
    """

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag

    def __reduce__(self):
        return (type(self), (str(self), self.flag))


class ModelNotFoundError(ConfigError, FileNotFoundError):
    """A reward model name is not a known alias, an existing checkpoint folder or a cached hub id."""


class ModelError(VisualPRMError, RuntimeError):
    """A model cannot be loaded or used (checkpoint layout, dtype, tokenizer, template)."""


class HostError(VisualPRMError, RuntimeError):
    """OpenRLHF is not what the plugin was built against (version, attribute, signature), or the
    host did not do what the plugin relies on (dense step rewards computed but not consumed)."""


class RewardFailureError(VisualPRMError, RuntimeError):
    """Too many groups of one RL step could not be scored (``--reward.max_failed_fraction``)."""


class RequestTooLargeError(InputError):
    """A request or one of its images is over a configured size limit (HTTP 413; on a recorded
    route, a bad sample like any unreadable image)."""

    def __init__(self, message: str, part: str = PART_IMAGE, reason: str = "too_large") -> None:
        super().__init__(message, part, reason)
