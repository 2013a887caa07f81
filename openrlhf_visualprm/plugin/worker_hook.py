"""Where the plugin's classes replace OpenRLHF's, in the driver and in every Ray worker.

- Driver: ``train()`` instantiates ``RewardModelActor`` through the name it imported from
  ``openrlhf.trainer.ray.launcher``; replacing that module attribute before the CLI module runs
  makes it build the plugin's reward actor instead.
- Workers: the trainer (``PPOTrainer``, or ``TrainingActor`` inside ``PPOTrainerAsync``) is a Ray
  actor; it builds ``RemoteExperienceMaker`` by the name in ``openrlhf.trainer.ppo_trainer``.
  :func:`setup_worker` runs in every worker (``worker_process_setup_hook``) and swaps that name
  the moment the module is imported, so workers that never train pay nothing.
Both are no-ops when no reward plan was exported (stock OpenRLHF behaviour).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

from openrlhf_visualprm.plugin.plan import RewardPlan

TRAINER_MODULE = "openrlhf.trainer.ppo_trainer"
LAUNCHER_MODULE = "openrlhf.trainer.ray.launcher"


def _patch_trainer_module(module) -> None:
    from openrlhf_visualprm.plugin.experience import PluginExperienceMaker

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
    import openrlhf.trainer.ray.launcher as launcher_module

    from openrlhf_visualprm.plugin.reward_actor import PluginRewardActor

    original = launcher_module.RewardModelActor
    launcher_module.RewardModelActor = PluginRewardActor

    def undo() -> None:
        launcher_module.RewardModelActor = original

    return undo
