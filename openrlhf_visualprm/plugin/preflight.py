"""Pre-flight checks of ``train`` that OpenRLHF's own parser does not make, each one a failure a
user would otherwise meet minutes into a launch (after Ray and the models started) as a traceback:

- generation: OpenRLHF 0.11 generates rollouts only with vLLM engines (its sample generator has
  no other path), so a plan without ``--vllm.num_engines`` cannot train, and ``vllm`` (the
  ``vllm`` extra), ``deepspeed`` and ``flash_attn`` must be importable; with ``--train.colocate_all`` the engines must cover exactly
  the actor's GPUs (OpenRLHF asserts that only after Ray started);
- critic: OpenRLHF's default estimator ``gae`` builds a critic from the first reward model when
  no ``--critic.model_name_or_path`` is given: with the plugin that is VisualPRM-8B (or the judge),
  a VLM reward checkpoint, not a value model;
- data columns: ``--data.input_key`` / ``--data.label_key`` / ``--data.image_key`` against the first
  rows of each local dataset (a wrong key reads as empty prompts, no labels, or text-only samples).

Each check appends to ``refuse`` (messages that start with the flag to fix: a launch refuses the
first, ``--dry-run`` lists them all and exits 2) or ``notes``.
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import os
from types import SimpleNamespace

VLLM_INSTALL = (
    "pip install 'openrlhf-visualprm[vllm]' (vllm==0.29.0, the version OpenRLHF 0.11.2 is tested with)"
)
# What OpenRLHF's train_ppo_ray and its actors import, with how to install it.
TRAIN_DEPENDENCIES = {
    "vllm": f"OpenRLHF's train_ppo_ray imports it to generate; {VLLM_INSTALL}",
    "deepspeed": "OpenRLHF's actors train with it; pip install 'openrlhf-visualprm[openrlhf]'",
    "flash_attn": "OpenRLHF's models import it; pip install flash-attn==2.8.3 --no-build-isolation",
}
ROWS_CHECKED = 3
# Column names the released datasets and ``convert-data`` use, for the "did you mean" hint.
USUAL_COLUMNS = {
    "--data.input_key": ("prompt", "question", "query", "input", "problem"),
    "--data.label_key": ("label", "answer", "ground_truth", "solution"),
    "--data.image_key": ("images", "image", "image_path"),
}


def missing_dependencies() -> list[str]:
    """The modules of :data:`TRAIN_DEPENDENCIES` that cannot be imported here."""
    return [name for name in TRAIN_DEPENDENCIES if importlib.util.find_spec(name) is None]


def check_generation(ns: SimpleNamespace, refuse: list[str], notes: list[str], dry_run: bool) -> None:
    engines, tp = ns.vllm.num_engines or 0, ns.vllm.tensor_parallel_size
    if engines <= 0:
        refuse.append(
            "--vllm.num_engines: not set, and OpenRLHF 0.11 generates rollouts only with vLLM engines (its "
            "sample generator fails at the first step without one); set --vllm.num_engines N (each engine "
            "takes --vllm.tensor_parallel_size GPUs)"
        )
    actor = ns.actor.num_nodes * ns.actor.num_gpus_per_node
    if engines > 0 and ns.train.colocate_all and not ns.train.async_enable and engines * tp != actor:
        refuse.append(
            f"--vllm.num_engines: with --train.colocate_all the vLLM engines share the actor's GPUs, so "
            f"--vllm.num_engines x --vllm.tensor_parallel_size ({engines} x {tp}) must equal "
            f"--actor.num_nodes x --actor.num_gpus_per_node ({actor})"
        )
    for name in missing_dependencies():
        message = f"{name}: not installed, and {TRAIN_DEPENDENCIES[name]}"
        if dry_run:
            notes.append(f"this machine cannot launch: {message}")
        else:
            refuse.append(message)


def check_critic(
    ns: SimpleNamespace, tokens: list[str], plugin_reward: bool, refuse: list[str], notes: list[str]
) -> None:
    """``gae`` without an explicit critic: refused when the critic would be a plugin reward model."""
    if ns.algo.advantage.estimator != "gae" or not ns.critic.model_name_or_path:
        return
    explicit = any(
        t == "--critic.model_name_or_path" or t.startswith("--critic.model_name_or_path=") for t in tokens
    )
    if explicit:
        notes.append(f"gae: the critic is {ns.critic.model_name_or_path}")
        return
    if plugin_reward:
        refuse.append(
            "--algo.advantage.estimator: not set, so OpenRLHF uses gae, which builds its critic from the first "
            f"reward model ({ns.critic.model_name_or_path}): a VisualPRM / judge checkpoint, not a value model. "
            "Choose a critic-free estimator (--algo.advantage.estimator group_norm, reinforce_baseline or rloo, "
            "as the examples do), or keep gae and set --critic.model_name_or_path (e.g. the policy)"
        )
    else:
        notes.append(
            f"gae: the critic is initialised from {ns.critic.model_name_or_path} (OpenRLHF's default)"
        )


def _first_rows(path: str) -> tuple[list[dict], str | None]:
    from openrlhf_visualprm.data.records import BadDataError, iter_rows

    rows: list[dict] = []
    try:
        for row in itertools.islice(iter_rows(path), 50):
            if row.error is not None:
                return rows, f"line {row.lineno}: {row.error}"
            rows.append(row.record)
            if len(rows) == ROWS_CHECKED:
                break
    except (BadDataError, OSError, ValueError) as exc:
        return rows, str(exc)
    return rows, None


def check_data_columns(ns: SimpleNamespace, datasets: dict[str, str | None], refuse: list[str]) -> None:
    """The dataset keys against the first rows of each local dataset file or ``save_to_disk`` folder
    (``datasets``: flag -> its value after the paths were made absolute; hub names are skipped)."""
    keys = [("--data.input_key", ns.data.input_key)]
    if ns.data.label_key:
        keys.append(("--data.label_key", ns.data.label_key))
    if (ns.data.max_images_per_prompt or 0) > 0:
        keys.append(("--data.image_key", ns.data.image_key))
    for flag, value in datasets.items():
        for path in (p.strip() for p in (value or "").split(",")):
            if not path or not os.path.exists(path):
                continue
            rows, error = _first_rows(path)
            if error is not None:
                refuse.append(f"{flag}: {path}: {error}")
                continue
            if not rows:
                refuse.append(f"{flag}: {path} has no rows")
                continue
            for key_flag, key in keys:
                bad = [i for i, row in enumerate(rows, 1) if key not in row]
                if bad:
                    columns = sorted(rows[bad[0] - 1])
                    close = difflib.get_close_matches(key, columns, n=1, cutoff=0.6) or [
                        c for c in USUAL_COLUMNS[key_flag] if c in columns
                    ]
                    hint = f"; did you mean {key_flag} {close[0]}?" if close else ""
                    refuse.append(
                        f"{key_flag}: {key!r} is not a column of {path} (row {bad[0]} has {', '.join(columns) or 'none'})"
                        f"{hint}"
                    )
