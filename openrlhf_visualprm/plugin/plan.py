"""The reward plan: which reward components run, with which settings and weights.

Built once by the launcher from the plugin flags and OpenRLHF's namespace, printed by
``--dry-run``, and shipped to every Ray worker as JSON in an environment variable (the reward
actor and the experience hook read it there), so driver and workers cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from openrlhf_visualprm import envs
from openrlhf_visualprm.bounds import number, parse_number
from openrlhf_visualprm.config_fields import option
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.outcome.config import OutcomeConfig
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.rewards.guard import DEFAULT_MAX_FAILED_FRACTION
from openrlhf_visualprm.torch_names import check_device_name

__all__ = [
    "COMPONENTS",
    "DENSE_ESTIMATORS",
    "PLAN_ENV",
    "JudgeConfig",
    "OutcomeConfig",
    "PRMConfig",
    "RewardPlan",
]

PLAN_ENV = "OPENRLHF_VISUALPRM_PLAN"

COMPONENTS = ("prm", "judge", "outcome")

# Estimators whose OpenRLHF 0.11 code turns per-token rewards into returns (get_cumulative_returns,
# or GAE's get_advantages_and_returns): every one it has. The experience hook adds the credit
# returns there, and stops the run if the code stopped passing through them.
DENSE_ESTIMATORS = (
    "gae",
    "reinforce",
    "rloo",
    "reinforce_baseline",
    "group_norm",
    "dr_grpo",
    "flash_reinforce",
)


@dataclass
class RewardPlan:
    prm: PRMConfig | None = None
    judge: JudgeConfig | None = None
    outcome: OutcomeConfig | None = None
    weights: dict[str, float] = field(default_factory=dict)
    estimator: str = "group_norm"
    n_samples_per_prompt: int = 1
    image_roots: list[str] = field(default_factory=list)
    pool: str | None = option(
        None, "name of a running RewardPool to send PRM/judge work to", unset="none", env=False
    )
    device: str = option("auto", "reward actor device: auto, cpu, cuda[:N]", env=False)
    max_failed_fraction: float = option(
        DEFAULT_MAX_FAILED_FRACTION,
        "stop the run when more than this fraction of a step's prompt groups had a bad sample "
        "(neutral rewards); 1 disables the guard",
        env=False,
    )

    def __post_init__(self) -> None:
        """A plan from flags or from the exported JSON is checked the same way (NaN is valid JSON)."""
        check_device_name(self.device, "--reward.device")
        number(self.max_failed_fraction, "--reward.max_failed_fraction", low=0, high=1)
        number(self.n_samples_per_prompt, "n_samples_per_prompt", low=1, integer=True)
        for name, weight in self.weights.items():
            number(weight, f"--reward.weights {name}")

    @property
    def components(self) -> list[str]:
        return [name for name in COMPONENTS if getattr(self, name) is not None]

    @property
    def dense_active(self) -> bool:
        """Credit returns (``--reward.prm.credit`` other than off) go on step-end tokens."""
        return self.prm is not None and self.prm.credit != "off" and self.estimator in DENSE_ESTIMATORS

    @property
    def credited(self) -> tuple[str, ...]:
        """Components whose reward arrives as credit returns, not in OpenRLHF's scalar: the PRM,
        and the outcome (each credit mode defines how the outcome enters)."""
        if not self.dense_active:
            return ()
        return tuple(c for c in ("prm", "outcome") if getattr(self, c) is not None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["components"] = self.components
        data["dense_active"] = self.dense_active
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RewardPlan:
        data = {k: v for k, v in data.items() if k not in ("components", "dense_active")}
        return cls(
            prm=PRMConfig.from_dict(data["prm"]) if data.get("prm") else None,
            judge=JudgeConfig.from_dict(data["judge"]) if data.get("judge") else None,
            outcome=OutcomeConfig.from_dict(data["outcome"]) if data.get("outcome") else None,
            **{k: v for k, v in data.items() if k not in ("prm", "judge", "outcome")},
        )

    @classmethod
    def from_json(cls, text: str) -> RewardPlan:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_env(cls) -> RewardPlan | None:
        """The plan the launcher exported, or None when the plugin's reward path is not in use."""
        text = envs.get(PLAN_ENV)
        return cls.from_json(text) if text else None


def parse_weights(text: str) -> dict[str, float]:
    """``"prm=0.5,outcome=1"`` -> ``{"prm": 0.5, "outcome": 1.0}``; errors name the bad item."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in COMPONENTS:
            raise ConfigError(
                f"--reward.weights: bad item {item!r}; expected NAME=NUMBER with NAME in {', '.join(COMPONENTS)}"
            )
        weights[name] = float(parse_number(value, f"--reward.weights {name}"))
    return weights
