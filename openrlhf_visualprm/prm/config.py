"""VisualPRM scoring configuration: one frozen, validated type every route parses into.

The launcher's ``--reward.prm.*`` flags, a pool / service request's ``"config"`` object and the
``reward_fns`` environment variables all become a :class:`PRMConfig`, so the same option means
the same thing everywhere and an option a route cannot honour is an error, never dropped.

Two kinds of fields:
- *scoring* options (:data:`SCORING_FIELDS`: method, aggregation, max_steps, splitter,
  temperature) travel with each request and every host honours them;
- *model* options (``max_tiles``, ``dtype``) are fixed when the model is loaded. A host that loaded
  the model with other values (a running reward pool) refuses the request
  (:meth:`PRMConfig.check_loaded`) rather than silently scoring with its own.
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
from openrlhf_visualprm.prm.aggregate import AGGREGATIONS
from openrlhf_visualprm.steps import DEFAULT_SEPARATOR

METHODS = ("per-step", "single", "shared")
DENSE_MODES = ("off", "value", "diff")
DTYPES = ("auto", "bfloat16", "float16", "float32")  # auto: bfloat16 on GPU, float32 on CPU
SCORING_FIELDS = ("method", "aggregation", "max_steps", "splitter", "temperature")
REGEX_PREFIX = "re:"  # splitter "re:PATTERN" splits on a regular expression


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
    dense: str = "off"
    v0: float = 0.5
    max_tiles: int = DEFAULT_MAX_TILES
    dtype: str = "auto"
    # prm | internvl2_5 | config | the text itself; None: the checkpoint config's, else InternVL2.5's
    # (prm.template.resolve_system_message). Fixed at load time, like max_tiles and dtype.
    system_message: str | None = None

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("aggregation", self.aggregation, AGGREGATIONS)
        _choice("dense", self.dense, DENSE_MODES)
        _choice("dtype", self.dtype, DTYPES)
        if self.max_steps is not None:
            number(self.max_steps, "prm max_steps (or null)", low=1, integer=True)
        # tokens and the tile-grid search grow with max_tiles (the search with its cube)
        number(self.max_tiles, "prm max_tiles", low=1, high=MAX_TILES_LIMIT, integer=True)
        number(self.temperature, "prm temperature", low=0, low_open=True)  # softmin: any finite T
        number(self.v0, "prm v0", low=0, high=1)  # the value before the first step: a P('+')
        if not isinstance(self.splitter, str) or not self.splitter:
            raise ConfigError(f"prm splitter must be a non-empty string, got {self.splitter!r}")
        if self.splitter.startswith(REGEX_PREFIX):
            try:
                re.compile(self.splitter[len(REGEX_PREFIX) :])
            except re.error as exc:
                raise ConfigError(
                    f"prm splitter {self.splitter!r} is not a valid regular expression: {exc}"
                ) from None
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

    def check_loaded(self, max_tiles: int, dtype: str, where: str, system_message: str | None = None) -> None:
        """Refuse to score with a model loaded with other model options than these."""
        problems = []
        if system_message != self.system_message:
            problems.append(f"system_message {system_message!r} (asked {self.system_message!r})")
        if max_tiles != self.max_tiles:
            problems.append(f"max_tiles {max_tiles} (asked {self.max_tiles})")
        if dtype != self.dtype:
            problems.append(f"dtype {dtype} (asked {self.dtype})")
        if problems:
            raise ConfigError(
                f"{where} loaded VisualPRM with {', '.join(problems)}; these are fixed at load time, so "
                "make --reward.prm.max_tiles / .dtype / .system_message match the pool or start a pool with these values"
            )


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
