"""Outcome-check configuration: one frozen, validated type (flags and env vars parse into it).

The answer extraction and math verification live in :mod:`openrlhf_visualprm.answers`.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from openrlhf_visualprm.bounds import number
from openrlhf_visualprm.config_fields import option
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.labels import DEFAULT_ANSWER_KEY
from openrlhf_visualprm.prm.config import _choice, _from_mapping

CHECKERS = ("math-verify", "exact")
MAX_TIMEOUT_S = 600.0  # per answer check: a longer one would stall a whole RL step


@dataclass(frozen=True)
class OutcomeConfig:
    """``checker``: math-verify (symbolic equivalence) or exact (normalised string equality)."""

    checker: str = option(
        "math-verify",
        "math-verify (symbolic equivalence) or exact (normalised string equality)",
        choices=CHECKERS,
    )
    timeout_s: float = option(
        5.0, f"seconds per answer check (at most {MAX_TIMEOUT_S:g})", flag="timeout", env="ANSWER_TIMEOUT"
    )
    answer_key: str = option(DEFAULT_ANSWER_KEY, "ground-truth key in the label dict", env="ANSWER_KEY")

    def __post_init__(self) -> None:
        _choice("outcome checker", self.checker, CHECKERS)
        number(self.timeout_s, "outcome timeout (seconds)", low=0, low_open=True, high=MAX_TIMEOUT_S)
        if not isinstance(self.answer_key, str) or not self.answer_key:
            raise ConfigError(f"outcome answer_key must be a non-empty string, got {self.answer_key!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "outcome config") -> OutcomeConfig:
        return _from_mapping(cls, data, where)
