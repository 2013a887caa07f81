"""Where the plugin's classes replace OpenRLHF's, in the driver and in every Ray worker.

- Driver: ``train()`` instantiates ``RewardModelActor`` through the name it imported from
  ``openrlhf.trainer.ray.launcher``; replacing that module attribute before the CLI module runs
  makes it build the plugin's reward actor instead.
- Workers: the trainer (``PPOTrainer``, or ``TrainingActor`` inside ``PPOTrainerAsync``) is a Ray
  actor; it builds ``RemoteExperienceMaker`` by the name in ``openrlhf.trainer.ppo_trainer``.
  :func:`setup_worker` runs in every worker (``worker_process_setup_hook``) and swaps that name
  the moment the module is imported, so workers that never train pay nothing.
Both are no-ops when no reward plan was exported (stock OpenRLHF behaviour).

Loud coupling: before patching, :func:`check_host` verifies the OpenRLHF version range and that
every OpenRLHF name the plugin patches or reads exists with the parameters it relies on
(:data:`HOST_CONTRACT`), and raises :class:`~openrlhf_visualprm.errors.HostError` naming what
moved. An OpenRLHF upgrade then fails at start-up with a message, not with zero rewards.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

from openrlhf_visualprm.errors import HostError
from openrlhf_visualprm.plugin.plan import RewardPlan

TRAINER_MODULE = "openrlhf.trainer.ppo_trainer"
LAUNCHER_MODULE = "openrlhf.trainer.ray.launcher"
MAKER_MODULE = "openrlhf.trainer.ppo_utils.experience_maker"
EXPERIENCE_MODULE = "openrlhf.trainer.ppo_utils.experience"
OPENRLHF_VERSIONS = ("0.11.2", "0.12")  # [min, max): what the plugin's patches were written against

# (module, dotted attribute, parameter names that must come first / be present, or None).
HOST_CONTRACT: dict[str, list[tuple[str, str, tuple[str, ...] | None]]] = {
    "driver": [
        (LAUNCHER_MODULE, "RewardModelActor", None),
        (LAUNCHER_MODULE, "BaseModelActor", None),
        (LAUNCHER_MODULE, "RayActorGroup.__init__", ("duplicate_actors",)),
        (LAUNCHER_MODULE, "RayActorGroup.async_run_method_batch", ("self", "method_name")),
        (LAUNCHER_MODULE, "RayActorGroup.async_run_method", ("self", "method_name")),
    ],
    "trainer": [
        (TRAINER_MODULE, "RemoteExperienceMaker", None),
        (MAKER_MODULE, "RemoteExperienceMaker.__init__", ("reward_model_group",)),
        (MAKER_MODULE, "RemoteExperienceMaker.make_experience", ("self", "samples_list")),
        (MAKER_MODULE, "RemoteExperienceMaker.compute_advantages_and_returns", ("self", "experiences")),
        (
            MAKER_MODULE,
            "RemoteExperienceMaker.get_cumulative_returns",
            ("self", "rewards", "action_mask", "gamma"),
        ),
        (
            MAKER_MODULE,
            "RemoteExperienceMaker.get_advantages_and_returns",
            ("self", "values", "rewards", "action_mask", "gamma", "lambd"),
        ),
    ],
}
# Experience fields the experience hook reads or writes.
EXPERIENCE_FIELDS = (
    "sequences",
    "action_mask",
    "rewards",
    "scores",
    "info",
    "index",
    "prompts",
    "labels",
    "images",
)


def _version_tuple(text: str) -> tuple[int, ...]:
    import re

    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check_host(role: str) -> None:
    """Raise :class:`HostError` when OpenRLHF is outside the supported range or a name of
    :data:`HOST_CONTRACT` [``role``] is missing or has other parameters."""
    import importlib
    import inspect
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("openrlhf")
    except PackageNotFoundError:
        raise HostError("OpenRLHF is not installed: pip install 'openrlhf>=0.11.2,<0.12'") from None
    low, high = OPENRLHF_VERSIONS
    if not _version_tuple(low) <= _version_tuple(installed) < _version_tuple(high):
        raise HostError(
            f"OpenRLHF {installed} is installed; openrlhf-visualprm patches OpenRLHF internals and supports "
            f">={low},<{high}: install a supported version"
        )
    problems = []
    for module_name, dotted, params in HOST_CONTRACT[role]:
        obj = importlib.import_module(module_name)
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is None:
            problems.append(f"{module_name}.{dotted} is missing")
            continue
        if params is None:
            continue
        names = list(inspect.signature(obj).parameters)
        ok = names[: len(params)] == list(params) if params[0] == "self" else all(p in names for p in params)
        if not ok:
            problems.append(f"{module_name}.{dotted}{tuple(names)} lacks the parameters {params}")
    if role == "trainer":
        import dataclasses

        experience = importlib.import_module(EXPERIENCE_MODULE).Experience
        have = {f.name for f in dataclasses.fields(experience)}
        missing = [f for f in EXPERIENCE_FIELDS if f not in have]
        if missing:
            problems.append(f"{EXPERIENCE_MODULE}.Experience lacks the fields {missing}")
    if problems:
        raise HostError(
            f"OpenRLHF {installed} does not match what the plugin patches ({role}): " + "; ".join(problems)
        )


def _patch_trainer_module(module) -> None:
    from openrlhf_visualprm.plugin.experience import PluginExperienceMaker

    check_host("trainer")

    if getattr(module, "RemoteExperienceMaker", None) is not PluginExperienceMaker:
        module.RemoteExperienceMaker = PluginExperienceMaker


class _PostImportPatcher(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after ``name`` is first imported (delegating the import)."""

    def __init__(self, name: str, patch: Callable) -> None:
        self.name = name
        self.patch = patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # let the normal finders locate the module
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader, patch = spec.loader, self.patch

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                patch(module)

        spec.loader = _Loader()
        return spec


def patch_when_imported(name: str, patch: Callable) -> None:
    if name in sys.modules:
        patch(sys.modules[name])
        return
    if not any(isinstance(f, _PostImportPatcher) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportPatcher(name, patch))


def setup_worker() -> None:
    """``worker_process_setup_hook`` of the plugin's Ray job."""
    if RewardPlan.from_env() is None:
        return
    patch_when_imported(TRAINER_MODULE, _patch_trainer_module)


def install_driver_hooks(plan: RewardPlan | None) -> Callable[[], None]:
    """Swap the reward actor class (when the plugin owns the reward); returns an undo function."""
    if plan is None:
        return lambda: None
    check_host("driver")
    import openrlhf.trainer.ray.launcher as launcher_module

    from openrlhf_visualprm.plugin.reward_actor import plugin_reward_actor

    original = launcher_module.RewardModelActor
    launcher_module.RewardModelActor = plugin_reward_actor()

    def undo() -> None:
        launcher_module.RewardModelActor = original

    return undo
