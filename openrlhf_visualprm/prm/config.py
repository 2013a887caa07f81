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
from openrlhf_visualprm.config_fields import option
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.images import DEFAULT_MAX_TILES, MAX_TILES_LIMIT
from openrlhf_visualprm.prm.aggregate import (
    AGGREGATIONS,
    CREDIT_MODES,
    DEFAULT_CREDIT,
    DEFAULT_CREDIT_TEMPERATURE,
    DEFAULT_TEMPERATURE,
    DEFAULT_VALUE_MAX_STEPS,
)
from openrlhf_visualprm.steps import (
    DEFAULT_SEPARATOR,
    REGEX_PREFIX,
    check_splitter,
    escape_separator,
    unescape_separator,
)
from openrlhf_visualprm.torch_names import DTYPE_CHOICES

METHODS = ("per-step", "single", "shared")
DTYPES = DTYPE_CHOICES  # auto: bfloat16 on GPU, float32 on CPU
DEFAULT_MAX_BATCH_TOKENS = 32768  # token budget of one PRM batch (a host option, not a PRMConfig field)
SCORING_FIELDS = ("method", "aggregation", "max_steps", "splitter", "temperature")
# Fields fixed when the model is loaded (the score/serve/eval commands' load flags).
LOAD_FIELDS = ("max_tiles", "dtype", "system_message")


@dataclass(frozen=True)
class PRMConfig:
    """How VisualPRM scores. ``model`` is what the user typed, ``path`` what the resolver found.

    Every described field becomes a flag (``--reward.prm.<name>``; ``--<name>`` in ``score`` /
    ``serve``) and, unless ``env=False``, an ``OPENRLHF_VISUALPRM_PRM_<NAME>`` variable of the
    ``reward_fns`` route (config_fields)."""

    model: str = "visualprm"
    path: str | None = None
    method: str = option(
        "shared",
        "scoring pass layout: shared (image+question once per group), single (one pass per "
        "response), per-step (one pass per step prefix; the reference)",
        choices=METHODS,
    )
    aggregation: str = option(
        "mean", "step scores -> one response score (softmin: see temperature)", choices=AGGREGATIONS
    )
    max_steps: int | None = option(
        None,
        "merge steps into at most N blocks, the final answer kept alone (VisualPRM-8B-v1.1's "
        "training data has at most 16)",
        unset="no merging",
    )
    splitter: str = option(
        DEFAULT_SEPARATOR,
        "step separator: literal text (\\n and \\t are the only escapes), re:PATTERN (a regular "
        "expression, taken literally), or preset:paragraphs|lines|steps|think",
        parse=unescape_separator,
        show=escape_separator,
    )
    temperature: float = option(DEFAULT_TEMPERATURE, "softmin temperature (aggregation softmin)")
    # how step scores become per-token returns in RL (rewards.credit); RL-side only, no score changes
    credit: str = option(
        DEFAULT_CREDIT,
        "how step scores (and the outcome) become per-token returns: anchored (the PRM ranks within "
        "the outcome class), process_grpo, pure, rloo, diff, diff_group, value; off = the scalar "
        "aggregate through OpenRLHF's estimator (README: credit assignment)",
        choices=CREDIT_MODES,
        env=False,
    )
    v0: float = option(0.0, "credit diff / diff_group: the value before the first step (a P(+))", env=False)
    empty_score: float = option(
        0.0, "credit modes: P(+) of the one step a stepless response counts as", env=False
    )
    value_max_steps: int = option(
        DEFAULT_VALUE_MAX_STEPS, "credit value: steps after this many earn nothing", env=False
    )
    credit_temperature: float = option(
        DEFAULT_CREDIT_TEMPERATURE, "credit pure: temperature of the min-form softmax", env=False
    )
    credit_anchor: bool = option(
        False,
        "per-step credit modes: each response's first-token return is the anchored value, the mode "
        "keeps its step-to-step credit",
        env=False,
    )
    max_tiles: int = option(
        DEFAULT_MAX_TILES, f"InternVL dynamic tiles per image (at most {MAX_TILES_LIMIT}); fixed at load"
    )
    dtype: str = option(
        "auto", "weights dtype (auto: bfloat16 on GPU, float32 on CPU); fixed at load", choices=DTYPES
    )
    # prm | internvl2_5 | config | the text itself; None: the checkpoint config's, else InternVL2.5's
    # (prm.template.resolve_system_message). Fixed at load time, like max_tiles and dtype.
    system_message: str | None = option(
        None,
        "system message: prm (the data pipeline's PRM prompt), internvl2_5, config, or the text itself; "
        "fixed at load, logged at load",
        unset="the checkpoint config's, else InternVL2.5's",
    )

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
