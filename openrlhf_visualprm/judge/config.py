"""MR. Judge configuration: one frozen, validated type that flags, pool workers and env vars
parse into, with one default per option (``rounds`` included: the plugin, the CLI and the
pools used to disagree). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from openrlhf_visualprm.bounds import number
from openrlhf_visualprm.config_fields import option
from openrlhf_visualprm.judge.aggregate import (
    AGGREGATORS,
    DEFAULT_AGGREGATOR,
    DEFAULT_ON_FAILURE,
    FAILURE_POLICIES,
)
from openrlhf_visualprm.judge.schedule import DEFAULT_ROUNDS, SCHEDULES
from openrlhf_visualprm.judge.template import MAX_CANDIDATES
from openrlhf_visualprm.prm.config import _choice, _from_mapping

BACKENDS = ("hf", "vllm")
DEFAULT_MAX_NEW_TOKENS = 1024
# Upper bounds (cost grows with each): 64 rounds is 16x the default's judge calls; 32768 tokens is
# the context of the released judge.
MAX_ROUNDS = 64
MAX_NEW_TOKENS_LIMIT = 32768


@dataclass(frozen=True)
class JudgeConfig:
    """How MR. Judge compares a group. ``model``: what the user typed; ``path``: resolved."""

    model: str = "mr-judge"
    path: str | None = None
    schedule: str = option(
        "listwise",
        "listwise rounds of up to group_size candidates, pairwise (all pairs, both orders), reference "
        "(each response against the label's reference solution), or a knockout bracket",
        choices=SCHEDULES,
        env=False,  # reward_fns/mr_judge.py gets one sample at a time: always reference
    )
    rounds: int = option(
        DEFAULT_ROUNDS, f"listwise rounds with reshuffled labels (at most {MAX_ROUNDS})", env=False
    )
    group_size: int = option(MAX_CANDIDATES, f"candidates per listwise call (2-{MAX_CANDIDATES})", env=False)
    backend: str = option("hf", "hf (transformers generate) or vllm (GPU)", choices=BACKENDS)
    max_new_tokens: int = option(
        DEFAULT_MAX_NEW_TOKENS, f"the judge's reasoning token cap (at most {MAX_NEW_TOKENS_LIMIT})"
    )
    aggregator: str = option(DEFAULT_AGGREGATOR, "verdicts -> rewards", choices=AGGREGATORS, env=False)
    on_failure: str = option(
        DEFAULT_ON_FAILURE,
        "an unparsed verdict is a tie (neutral) or left out (skip); never a win",
        choices=FAILURE_POLICIES,
        env=False,
    )

    def __post_init__(self) -> None:
        _choice("judge schedule", self.schedule, SCHEDULES)
        _choice("judge backend", self.backend, BACKENDS)
        _choice("judge aggregator", self.aggregator, AGGREGATORS)
        _choice("judge on_failure", self.on_failure, FAILURE_POLICIES)
        # rounds and max_new_tokens multiply the judge's generation time: bounded
        for name, low, high in (
            ("rounds", 1, MAX_ROUNDS),
            ("group_size", 2, MAX_CANDIDATES),
            ("max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT),
        ):
            number(getattr(self, name), f"judge {name}", low=low, high=high, integer=True)

    def judge_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``MRJudge`` / ``MRJudge.from_pretrained`` (besides the backend)."""
        return {
            "schedule": self.schedule,
            "k": self.group_size,
            "rounds": self.rounds,
            "aggregator": self.aggregator,
            "on_failure": self.on_failure,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "judge config") -> JudgeConfig:
        return _from_mapping(cls, data, where)
