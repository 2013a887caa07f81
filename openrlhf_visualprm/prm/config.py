"""VisualPRM scoring configuration: one frozen, validated type every route parses into.

The launcher's ``--reward.prm.*`` flags, a pool / service request's ``"config"`` object and the
``reward_fns`` environment variables all become a :class:`PRMConfig`, so the same option means
the same thing everywhere and an option a route cannot honour is an error, never dropped.

Two kinds of fields:
- *scoring* options (:data:`SCORING_FIELDS`: method, aggregation, max_steps, splitter,
  temperature) travel with each request and every host honours them;
- *model* options (``max_tiles``, ``dtype``, ``system_message``, the checkpoint) are fixed when
  the model is loaded. A plan served by a running reward pool whose config differs in any of them
  is refused by name (``rewards.components.loaded_config_diff``) rather than silently scored
  with the pool's.
Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from openrlhf_visualprm.bounds import number
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.images import DEFAULT_MAX_TILES, MAX_TILES_LIMIT
from openrlhf_visualprm.prm.aggregate import AGGREGATIONS, CREDIT_MODES, DEFAULT_CREDIT
from openrlhf_visualprm.steps import DEFAULT_SEPARATOR, REGEX_PREFIX, check_splitter

METHODS = ("per-step", "single", "shared")
DTYPES = ("auto", "bfloat16", "float16", "float32")  # auto: bfloat16 on GPU, float32 on CPU
DEFAULT_MAX_BATCH_TOKENS = 32768  # token budget of one PRM batch (a host option, not a PRMConfig field)
SCORING_FIELDS = ("method", "aggregation", "max_steps", "splitter", "temperature")


@dataclass(frozen=True)
class PRMConfig:
    """How VisualPRM scores. ``model`` is what the user typed, ``path`` what the resolver found."""

    model: str = "visualprm"
    path: str | None = None
    method: str = "shared"
    aggregation: str = "mean"
    max_steps: int | None = None
    splitter: str = DEFAULT_SEPARATOR
    temperature: float = 0.1
    # how step scores become per-token returns in RL (rewards.credit); RL-side only, no score changes
    credit: str = DEFAULT_CREDIT
    v0: float = 0.0  # diff / diff_group: the value before the first step
    empty_score: float = 0.0  # a stepless response counts as one step with this P('+')
    value_max_steps: int = 8  # value: steps after this many earn nothing
    credit_temperature: float = 0.1  # pure: T of the min-form softmax
    credit_anchor: bool = False  # per-step modes: each response's level set by the anchored value
    max_tiles: int = DEFAULT_MAX_TILES
    dtype: str = "auto"
    # prm | internvl2_5 | config | the text itself; None: the checkpoint config's, else InternVL2.5's
    # (prm.template.resolve_system_message). Fixed at load time, like max_tiles and dtype.
    system_message: str | None = None

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("aggregation", self.aggregation, AGGREGATIONS)
        _choice("credit", self.credit, CREDIT_MODES)
        _choice("dtype", self.dtype, DTYPES)
        if self.max_steps is not None:
            number(self.max_steps, "prm max_steps (or null)", low=1, integer=True)
        # tokens and the tile-grid search grow with max_tiles (the search with its cube)
        number(self.max_tiles, "prm max_tiles", low=1, high=MAX_TILES_LIMIT, integer=True)
        check_splitter(self.splitter)  # literal, re:PATTERN or preset:NAME (steps.py)
        number(self.value_max_steps, "prm value_max_steps", low=1, integer=True)
        if not isinstance(self.credit_anchor, bool):
            raise ConfigError(f"prm credit_anchor must be true or false, got {self.credit_anchor!r}")
        number(self.temperature, "prm temperature", low=0, low_open=True)  # softmin: any finite T
        number(self.credit_temperature, "prm credit_temperature", low=0, low_open=True)
        number(self.v0, "prm v0", low=0, high=1)  # the value before the first step: a P('+')
        number(self.empty_score, "prm empty_score (a P('+'))", low=0, high=1)
        if self.system_message is not None and (
            not isinstance(self.system_message, str) or not self.system_message.strip()
        ):
            raise ConfigError(
                "prm system_message must be prm, internvl2_5, config or the text itself, "
                f"got {self.system_message!r}"
            )

    # ------------------------------------------------------------------ views
    def split_pattern(self) -> str | re.Pattern[str]:
        """The splitter as :func:`openrlhf_visualprm.steps.split_steps` takes it."""
        if self.splitter.startswith(REGEX_PREFIX):
            return re.compile(self.splitter[len(REGEX_PREFIX) :])
        return self.splitter

    def scoring_options(self) -> dict[str, Any]:
        """The per-request options, as a pool / service request's ``"config"`` carries them."""
        return {name: getattr(self, name) for name in SCORING_FIELDS}

    def score_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``VisualPRM.score`` for these options."""
        return {**self.scoring_options(), "splitter": self.split_pattern()}

    def credit_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`openrlhf_visualprm.rewards.credit.step_returns` (weights aside)."""
        return {
            "v0": self.v0,
            "empty_score": self.empty_score,
            "temperature": self.credit_temperature,
            "value_max_steps": self.value_max_steps,
            "anchor": self.credit_anchor,
        }

    def load_dtype(self, device: str) -> str:
        """The dtype to load with on ``device``: ``auto`` is bfloat16 on GPU, float32 on CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if str(device).startswith("cuda") else "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "prm config") -> PRMConfig:
        """From a dict; unknown keys are an error naming them."""
        return _from_mapping(cls, data, where)

    def with_request(self, options: Mapping[str, Any] | None, where: str = "config") -> PRMConfig:
        """These settings overridden by a request's scoring options; only :data:`SCORING_FIELDS`."""
        if not options:
            return self
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where} must be an object, got {type(options).__name__}")
        unknown = sorted(set(options) - set(SCORING_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where} has unknown keys {unknown}: a request can set only {list(SCORING_FIELDS)} "
                "(max_tiles / dtype are fixed when the model is loaded)"
            )
        return replace(self, **dict(options))


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _from_mapping(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; allowed: {sorted(names)}")
    return cls(**dict(data))
