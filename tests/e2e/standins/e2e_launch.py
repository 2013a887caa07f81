"""One e2e launch: ``python -m e2e_launch plugin|stock ARGS...``.

Installs the recording policy stand-in, makes every Ray worker of this job see the ``E2E_*``
variables (the case's output folder), then runs the real entry point:
- ``plugin``: ``openrlhf-visualprm train ARGS`` (the plugin's launcher, hooks and reward actor);
- ``stock``: ``python -m openrlhf.cli.train_ppo_ray ARGS``, Ray started the way a stock user
  passes the ``OPENRLHF_VISUALPRM_*`` variables a ``reward_fns/`` file reads.
``ray.init`` is wrapped only to add the ``E2E_*`` variables to the job's ``runtime_env``; whatever
the launcher passes (its worker hook, its plan) is kept as given.
"""

from __future__ import annotations

import os
import runpy
import sys

import ray


def _env(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes)}


def _add_case_env_to_workers() -> None:
    real_init = ray.init

    def init(*args, **kwargs):
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**_env(("E2E_",)), **(runtime_env.get("env_vars") or {})}
        return real_init(*args, runtime_env=runtime_env, **kwargs)

    ray.init = init


def main(argv: list[str]) -> int:
    route, rest = argv[0], argv[1:]
    import openrlhf.trainer.ray.ppo_actor as ppo_actor
    from e2e_policy import RecordingPolicyActor

    ppo_actor.PolicyModelActor = RecordingPolicyActor
    _add_case_env_to_workers()
    if route == "plugin":
        from openrlhf_visualprm import cli

        return cli.main(["train", *rest])
    if route == "stock":
        ray.init(runtime_env={"env_vars": _env(("OPENRLHF_VISUALPRM_",))})
        sys.argv = ["train_ppo_ray", *rest]
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)
        return 0
    raise SystemExit(f"e2e_launch: unknown route {route!r} (plugin or stock)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
