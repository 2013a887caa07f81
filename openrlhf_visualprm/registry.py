"""Reward-model aliases: short names users type -> the checkpoint and kind behind them.

``--reward_pretrain visualprm`` is friendlier than a hub id, and a single table keeps the
launcher, the reward workers and the offline tools agreeing on what a name means. Users add
their own names with :func:`register` (e.g. a fine-tuned PRM on a shared disk).

Resolution never downloads: a local folder is used as is, a hub id is looked up in the local
Hugging Face cache. When the checkpoint is not there, :func:`resolve_model` reports it
(``path=None``) and :func:`require_local` raises :class:`ModelNotFoundError` saying what to do.

:func:`resolve_model` is the one resolver: the launcher (``train``), the judge and PRM loaders,
the pools and ``reward_fns/`` all call it. The kind it returns is never guessed from a missing
checkpoint: an alias or a registered repo id (typed directly, e.g. ``OpenGVLab/VisualPRM-8B-v1_1``)
has the kind of its entry, cached or not; a local or cached checkpoint is classified by its
``config.json``; an uncached unregistered hub id has ``kind=None`` and ``source="missing"``
(callers refuse it rather than guess). ``mr-judge`` means ``$OPENRLHF_VISUALPRM_JUDGE_MODEL``
when that is set, on every route.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from openrlhf_visualprm import envs
from openrlhf_visualprm.errors import ConfigError, ModelNotFoundError

__all__ = [
    "KINDS",
    "ModelNotFoundError",
    "RewardModelSpec",
    "ResolvedModel",
    "resolve_model",
    "require_local",
]

KINDS = ("prm", "judge")
JUDGE_MODEL_ENV = "OPENRLHF_VISUALPRM_JUDGE_MODEL"  # what the mr-judge alias stands for


@dataclass(frozen=True)
class RewardModelSpec:
    """What an alias stands for. ``kind`` is ``"prm"`` (VisualPRM-style) or ``"judge"``."""

    repo_id: str
    kind: str
    description: str = ""
    revision: str | None = None
    env: str | None = None  # an environment variable that, when set, replaces repo_id

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.repo_id:
            raise ConfigError("repo_id must be a non-empty hub id or local path")

    def target(self) -> str:
        """The hub id or folder this entry stands for now (its env override first)."""
        if not self.env:
            return self.repo_id
        # the package's own variables are read through envs; a user's alias may name its own
        value = envs.get(self.env) if self.env in envs.VARS else os.environ.get(self.env)
        override = (value or "").strip()
        return override or self.repo_id


# There are no public MR. Judge weights: the judge protocol runs on an instruction VLM.
DEFAULT_JUDGE_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

_BUILTIN: dict[str, RewardModelSpec] = {
    "visualprm": RewardModelSpec(
        "OpenGVLab/VisualPRM-8B-v1_1", "prm", "VisualPRM-8B v1.1 (InternVL2.5-8B based process reward model)"
    ),
    "visualprm-v1": RewardModelSpec("OpenGVLab/VisualPRM-8B", "prm", "VisualPRM-8B, the first release"),
    "mr-judge": RewardModelSpec(
        DEFAULT_JUDGE_MODEL,
        "judge",
        "MR. Judge protocol on Qwen2.5-VL-7B-Instruct (no public MR. Judge weights); "
        f"${JUDGE_MODEL_ENV} overrides",
        env=JUDGE_MODEL_ENV,
    ),
}
_REGISTRY: dict[str, RewardModelSpec] = dict(_BUILTIN)


def register(alias: str, spec: RewardModelSpec, overwrite: bool = False) -> None:
    """Add a reward-model alias usable everywhere a model is named (launcher, CLI, reward_fns).

    Args:
        alias: the name users type (case-insensitive; no ``,`` or path separator).
        spec: what it stands for: repo id or folder, kind (``prm`` / ``judge``), optional env override.
        overwrite: replace an existing, different entry instead of refusing.

    Raises:
        ConfigError: a bad alias, or one already registered to something else.
    """
    key = alias.strip().lower()
    if not key or "," in key or os.sep in key:
        raise ConfigError(f"alias {alias!r} must be a non-empty name without ',' or path separators")
    if key in _REGISTRY and not overwrite and _REGISTRY[key] != spec:
        raise ConfigError(
            f"alias {alias!r} is already registered ({_REGISTRY[key].repo_id}); pass overwrite=True"
        )
    _REGISTRY[key] = spec


def unregister(alias: str) -> None:
    """Remove a user alias; built-in aliases come back to their default."""
    key = alias.strip().lower()
    if key in _BUILTIN:
        _REGISTRY[key] = _BUILTIN[key]
    else:
        _REGISTRY.pop(key, None)


def get_spec(name: str) -> RewardModelSpec | None:
    return _REGISTRY.get(name.strip().lower())


def spec_for_repo(repo_id: str) -> RewardModelSpec | None:
    """The entry whose hub id (or current env override) is ``repo_id``, if one is registered."""
    key = repo_id.strip().lower()
    for spec in _REGISTRY.values():
        if key in (spec.repo_id.lower(), spec.target().lower()):
            return spec
    return None


def aliases() -> dict[str, RewardModelSpec]:
    return dict(_REGISTRY)


@dataclass(frozen=True)
class ResolvedModel:
    """A name after resolution. ``path`` is None when the checkpoint is not on this machine."""

    name: str
    kind: str | None
    repo_id: str | None
    path: str | None
    source: str  # "local" | "cache" | "missing"

    def to_dict(self) -> dict:
        return asdict(self)


def _hub_cache_snapshot(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return None
    hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(hit, str):
        return Path(hit).parent
    return None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _kind_from_config(path: Path) -> str | None:
    """Read ``config.json``: InternVL -> a VisualPRM, another VLM (``vision_config``) -> a judge,
    anything else (e.g. a stock OpenRLHF text reward model) -> None: not the plugin's."""
    import json

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    model_type = str(config.get("model_type", "")).lower()
    archs = " ".join(config.get("architectures") or []).lower()
    if "internvl" in model_type or "internvl" in archs:
        return "prm"
    return "judge" if "vision_config" in config else None


def checkpoint_kind(path: str | Path) -> str | None:
    """What a local checkpoint's ``config.json`` says it is: ``prm`` (InternVL), ``judge`` (another
    VLM) or None (no vision config, or no readable config)."""
    return _kind_from_config(Path(path))


def _kind_of_checkpoint(path: Path, spec: RewardModelSpec | None, kind: str | None) -> str | None:
    if kind is not None:
        return kind
    return spec.kind if spec is not None else _kind_from_config(path)


def resolve_model(name_or_path: str, kind: str | None = None) -> ResolvedModel:
    """Resolve an alias, a registered repo id, a local folder or a hub id without the network.

    ``kind`` forces the kind (a caller that knows it loads a judge). Raises
    :class:`ModelNotFoundError` for a name that is none of those, or a folder without a config.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelNotFoundError(f"reward model name must be a non-empty string, got {name_or_path!r}")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS} or None, got {kind!r}")
    name = name_or_path.strip()
    spec = get_spec(name)
    if spec is not None:
        target, revision = spec.target(), spec.revision
    else:
        target, revision = name, None
    local = Path(target).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{local} is a folder but has no config.json: not a model checkpoint")
        return ResolvedModel(
            name, _kind_of_checkpoint(local, spec, kind), None, str(local.resolve()), "local"
        )
    if not _looks_like_hub_id(target):
        known = ", ".join(sorted(_REGISTRY))
        what = f"{name!r} (-> {target!r})" if target != name else repr(name)
        raise ModelNotFoundError(
            f"reward model {what} is not a known alias ({known}), not an existing folder and not a hub id "
            "of the form 'owner/name'. Check the spelling or the path (relative paths are taken from the "
            "current directory), or register the alias with openrlhf_visualprm.registry.register()."
        )
    if spec is None:
        spec = spec_for_repo(target)
    snapshot = _hub_cache_snapshot(target, revision)
    if snapshot is not None:
        return ResolvedModel(name, _kind_of_checkpoint(snapshot, spec, kind), target, str(snapshot), "cache")
    return ResolvedModel(name, kind or (spec.kind if spec else None), target, None, "missing")


def require_local(name_or_path: str, kind: str | None = None) -> ResolvedModel:
    """Like :func:`resolve_model` but the checkpoint must be on this machine."""
    resolved = resolve_model(name_or_path, kind)
    if resolved.path is None:
        raise ModelNotFoundError(
            f"reward model {name_or_path!r} ({resolved.repo_id}) is not in the local Hugging Face cache and "
            "this process does not download. Fetch it first, e.g. "
            f"`hf download {resolved.repo_id}` on a machine with access (then copy the cache), "
            "or pass a local checkpoint folder." + _env_hint(name_or_path)
        )
    return resolved


def _env_hint(name: str) -> str:
    spec = get_spec(name)
    if spec is None or not spec.env:
        return ""
    return f" ({name!r} means ${spec.env} when set, else {spec.repo_id}; set it to a local folder to use another.)"


def parse_model_list(value: str) -> list[str]:
    """Split ``"visualprm,mr-judge"`` into names; empty items are an error, not ignored."""
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise ConfigError(
            f"bad reward model list {value!r}: expected comma-separated names without empty items"
        )
    return items
