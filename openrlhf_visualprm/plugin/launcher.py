"""``openrlhf-visualprm train``: OpenRLHF's ``train_ppo_ray`` with multimodal reward models.

Steps, all before any GPU is touched:
1. take the plugin's flags out of the command line (:mod:`.options`),
2. rename legacy flat flags to OpenRLHF 0.11's dotted ones (:mod:`.legacy_flags`),
3. resolve reward-model aliases (``visualprm``, ``visualprm-v1``, ``mr-judge``, paths, lists),
4. run OpenRLHF's *real* parser and post-parse checks on the result (:mod:`.openrlhf_cli`),
5. build the reward plan and the GPU plan, and check the combination.
``--dry-run`` prints all that and exits. Otherwise the launcher starts Ray with the plugin's
``worker_process_setup_hook`` (so trainer actors, including async training's nested actors,
get the experience hook), swaps the reward actor class in the driver, and runs OpenRLHF's CLI.
"""

from __future__ import annotations

import difflib
import json
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from openrlhf_visualprm import envs, registry
from openrlhf_visualprm.config_fields import config_from_flags
from openrlhf_visualprm.errors import ConfigError, FlagError
from openrlhf_visualprm.plugin import legacy_flags, openrlhf_cli, preflight
from openrlhf_visualprm.plugin.options import (
    JUDGE_PREFIX,
    OUTCOME_PREFIX,
    PRM_PREFIX,
    parse_plugin_flags,
    plugin_option_strings,
)
from openrlhf_visualprm.plugin.plan import (
    DENSE_ESTIMATORS,
    PLAN_ENV,
    JudgeConfig,
    OutcomeConfig,
    PRMConfig,
    RewardPlan,
    parse_weights,
)

WORKER_HOOK = "openrlhf_visualprm.plugin.worker_hook.setup_worker"
OPENRLHF_ENV_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "true",
    "NCCL_DEBUG": "WARN",
    "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1",
}
_PLUGIN_PREFIXES = ("--reward.prm.", "--reward.judge.", "--reward.outcome.")
_MODEL_FLAG = "--reward.model_name_or_path"
SKIP_MODEL_CHECK_ENV = "OPENRLHF_VISUALPRM_SKIP_MODEL_CHECK"


@dataclass
class LaunchPlan:
    openrlhf_argv: list[str]
    namespace: SimpleNamespace
    reward_plan: RewardPlan | None
    gpu_plan: dict
    renamed: list[tuple[str, str]] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # --dry-run only: what a launch would refuse
    dry_run: bool = False
    as_json: bool = False

    def to_dict(self) -> dict:
        return {
            "openrlhf_module": openrlhf_cli.MODULE,
            "openrlhf_argv": self.openrlhf_argv,
            "renamed_flags": [{"legacy": a, "openrlhf": b} for a, b in self.renamed],
            "reward_plan": self.reward_plan.to_dict() if self.reward_plan else None,
            "reward_models": self.models,
            "gpu_plan": self.gpu_plan,
            "notes": self.notes,
            "would_refuse": self.refusals,
        }


# ----------------------------------------------------------------------------- argv rewriting
def _known_flags() -> list[str]:
    flags = openrlhf_cli.option_strings() | plugin_option_strings()
    return sorted(flags | set(legacy_flags.RENAMED) | set(legacy_flags.EXPANDED))


def _unknown_flag_error(flag: str, reason: str) -> FlagError:
    close = difflib.get_close_matches(flag, _known_flags(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return FlagError(f"unknown flag {flag}: {reason}.{hint} See `openrlhf-visualprm train --help`.", flag)


def rename_legacy(tokens: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Rewrite legacy flat flags (``--pretrain``) to 0.11 ones; values and order are kept."""
    out: list[str] = []
    renamed: list[tuple[str, str]] = []
    for token in tokens:
        if not token.startswith("--"):
            out.append(token)
            continue
        name, eq, value = token.partition("=")
        if name.startswith(_PLUGIN_PREFIXES) or name in ("--reward.weights", "--reward.pool"):
            raise _unknown_flag_error(name, "it looks like a plugin flag but the plugin has no such option")
        mapped = legacy_flags.translate_flag(name)
        if mapped is None:
            out.append(token)
            continue
        if eq and len(mapped) != 1:
            raise FlagError(
                f"{name} is a switch in OpenRLHF 0.11 terms ({' '.join(mapped)}); give it no value", name
            )
        out.extend([mapped[0] + "=" + value] if eq else mapped)
        renamed.append((name, " ".join(mapped)))
    return out, renamed


def _find_value(tokens: list[str], flag: str) -> tuple[int, str | None]:
    """Index of the value token of ``flag`` (last occurrence wins, as in argparse) and the value."""
    found = (-1, None)
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            found = (i + 1, tokens[i + 1])
        elif token.startswith(flag + "="):
            found = (i, token.split("=", 1)[1])
    return found


def _set_value(tokens: list[str], index: int, flag: str, value: str) -> None:
    tokens[index] = (flag + "=" + value) if tokens[index].startswith(flag + "=") else value


# ----------------------------------------------------------------------------- local paths
# Ray workers run in the cluster's working directory, not the launcher's: every relative path a
# worker opens is made absolute here, against the directory the user typed the command in.
DATA_PATH_FLAGS = ("--data.prompt_dataset", "--data.eval_dataset")
_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow", ".txt")


def absolute_image_roots(text: str, missing: list[str] | None = None) -> list[str]:
    """``--reward.image_roots`` as absolute folders. A folder that does not exist is refused, or
    (``missing`` given: ``--dry-run``) reported there."""
    roots = []
    for item in (s.strip() for s in (text or "").split(",")):
        if not item:
            continue
        path = Path(os.path.abspath(os.path.expanduser(item)))
        if not path.is_dir():
            message = (
                f"--reward.image_roots: {item!r} (= {path}, relative to {os.getcwd()}) is not an existing "
                "folder; relative roots are taken from the directory you launch in"
            )
            if missing is None:
                raise FlagError(message, "--reward.image_roots")
            missing.append(message)
        roots.append(str(path.resolve()) if path.is_dir() else str(path))
    return roots


def _looks_local(item: str) -> bool:
    return item.startswith((".", "/", "~")) or item.lower().endswith(_DATA_SUFFIXES) or item.count("/") > 1


def absolute_data_paths(tokens: list[str], missing: list[str] | None = None) -> None:
    """Rewrite each existing local dataset path of :data:`DATA_PATH_FLAGS` to an absolute one, in
    place; a path that looks local but does not exist is refused (or reported in ``missing``).
    Hub dataset names (``owner/name``) are left to OpenRLHF."""
    for flag in DATA_PATH_FLAGS:
        index, value = _find_value(tokens, flag)
        if value is None:
            continue
        items = []
        for item in value.split(","):
            item = item.strip()
            path = os.path.abspath(os.path.expanduser(item)) if item else item
            if item and os.path.exists(path):
                items.append(path)
                continue
            if item and _looks_local(item):
                message = f"{flag}: {item!r} (= {path}) does not exist (relative to {os.getcwd()})"
                if missing is None:
                    raise FlagError(message, flag)
                missing.append(message)
            items.append(item)
        _set_value(tokens, index, flag, ",".join(items))


# ----------------------------------------------------------------------------- reward models
def _resolve(name: str, flag: str) -> registry.ResolvedModel:
    try:
        return registry.resolve_model(name)
    except (registry.ModelNotFoundError, ValueError) as exc:
        raise FlagError(f"{flag}: {exc}", flag) from None


def _plugin_models(tokens: list[str], judge_model: str | None) -> tuple[list[registry.ResolvedModel], bool]:
    """Resolve ``--reward.model_name_or_path`` (and ``--reward.judge.model``); rewrite to paths.

    Returns the plugin's models, and whether the reward flag names only models the plugin does not
    handle (a stock OpenRLHF reward model: passed through untouched).
    """
    index, value = _find_value(tokens, _MODEL_FLAG)
    resolved: list[registry.ResolvedModel] = []
    if value is not None:
        try:
            names = registry.parse_model_list(value)
        except ValueError as exc:
            raise FlagError(f"{_MODEL_FLAG}: {exc}", _MODEL_FLAG) from None
        resolved = [_resolve(name, _MODEL_FLAG) for name in names]
        unknown = [r for r in resolved if r.kind is None and r.source == "missing"]
        if unknown:
            r = unknown[0]
            raise FlagError(
                f"{_MODEL_FLAG}: {r.name!r} is not a registered reward model (aliases: "
                f"{', '.join(sorted(registry.aliases()))}), not a local folder and not in the local Hugging Face "
                "cache, so the launcher cannot tell whether it is a VisualPRM, a judge or a stock OpenRLHF reward "
                "model. Download it first (hf download ...), pass a local folder, or register it "
                "with openrlhf_visualprm.registry.register()",
                _MODEL_FLAG,
            )
        ours = [r for r in resolved if r.kind in registry.KINDS]
        if not ours:
            resolved = []  # a stock reward model: OpenRLHF's own RewardModelActor handles it
        elif len(ours) != len(resolved):
            stock = [r.name for r in resolved if r.kind not in registry.KINDS]
            raise FlagError(
                f"{_MODEL_FLAG}: {', '.join(stock)} is not a VisualPRM or judge model; mixing a stock "
                "OpenRLHF reward model with plugin reward models is not supported (use one or the other)",
                _MODEL_FLAG,
            )
        else:
            _set_value(tokens, index, _MODEL_FLAG, ",".join(r.path or r.repo_id or r.name for r in resolved))
    if judge_model is not None:
        judge = _resolve(judge_model, "--reward.judge.model")
        judge = registry.ResolvedModel(judge.name, "judge", judge.repo_id, judge.path, judge.source)
        resolved = [r for r in resolved if r.kind != "judge"] + [judge]
    for r in resolved:
        if r.kind == "judge" and r.path and registry.checkpoint_kind(r.path) != "judge":
            what = (
                "a VisualPRM (InternVL) checkpoint" if registry.checkpoint_kind(r.path) == "prm" else "no VLM"
            )
            flag = "--reward.judge.model" if judge_model is not None else _MODEL_FLAG
            if os.path.isfile(os.path.join(r.path, "config.json")):
                raise FlagError(
                    f"{flag}: the judge {r.name} ({r.path}) is {what}, not a chat VLM judge; pass a chat VLM "
                    "such as Qwen/Qwen2.5-VL-7B-Instruct (mr-judge)",
                    flag,
                )
    for kind in registry.KINDS:
        if sum(r.kind == kind for r in resolved) > 1:
            names = ", ".join(r.name for r in resolved if r.kind == kind)
            raise FlagError(
                f"{_MODEL_FLAG}: more than one {kind} model ({names}); give one of each", _MODEL_FLAG
            )
    return resolved, value is not None and not resolved


def _explicit_plugin_flags(argv: list[str]) -> list[str]:
    flags = []
    for token in argv:
        name = token.split("=", 1)[0]
        if name.startswith(_PLUGIN_PREFIXES) or name in (
            "--reward.weights",
            "--reward.pool",
            "--reward.image_roots",
        ):
            flags.append(name)
    return flags


def check_judge_balance(plan) -> None:
    """Refuse listwise rounds that leave labels unbalanced (judge.schedule.balanced_rounds)."""
    from openrlhf_visualprm.judge.schedule import balanced_rounds

    judge = plan.judge
    block = balanced_rounds(plan.n_samples_per_prompt, judge.group_size)
    if judge.schedule != "listwise" or block is None or judge.rounds % block == 0:
        return
    fixed = block * -(-judge.rounds // block)
    raise FlagError(
        f"--reward.judge.rounds {judge.rounds} breaks label balancing: with groups of "
        f"{plan.n_samples_per_prompt} in sets of {block}, each response holds every label once per {block} "
        f'rounds, so with {judge.rounds} a judge that prefers one position (always "A") gives rewards that are '
        f"position noise. Use --reward.judge.rounds {fixed} (a multiple of {block})",
        "--reward.judge.rounds",
    )


def credit_notes(plan) -> list[str]:
    """Launch notes for a credit mode that pays for a known hack (benchmarks/credit_probe.py)."""
    credit, notes = plan.prm.credit, []
    if plan.estimator not in DENSE_ESTIMATORS:
        notes.append(f"--reward.prm.credit {credit}: estimator {plan.estimator} has no per-token returns")
    if credit == "value":
        notes.append(
            f"--reward.prm.credit value pays every step its P(+), up to --reward.prm.value_max_steps "
            f"{plan.prm.value_max_steps}: padding with confident steps pays; prefer anchored or diff_group"
        )
    elif credit == "off":
        notes.append(
            f"--reward.prm.credit off: the PRM's {plan.prm.aggregation} aggregate is one summed reward; under "
            "group statistics mean pays for padding and min for collapsing to one step (credit_probe.py)"
        )
    elif credit in ("process_grpo", "rloo", "pure"):
        notes.append(
            f"--reward.prm.credit {credit} sums per-step credit: padding or repeating confident steps can pay "
            "(benchmarks/credit_probe.py); watch prm/num_steps and credit/* diagnostics"
        )
    elif credit in ("diff", "diff_group"):
        notes.append(
            f"--reward.prm.credit {credit} pays the last step: confident steps appended after a wrong answer "
            "pay (benchmarks/credit_probe.py); anchored does not"
        )
    return notes


def build_reward_plan(
    popts, models: list[registry.ResolvedModel], ns: SimpleNamespace, missing: list[str] | None = None
) -> RewardPlan:
    """The flags parsed into the component config types; a value they refuse names its flag."""
    by_kind = {r.kind: r for r in models}
    plan = config_from_flags(
        popts,
        RewardPlan,
        prefix="--reward.",
        dest_prefix="reward_",
        estimator=ns.algo.advantage.estimator,
        n_samples_per_prompt=ns.rollout.n_samples_per_prompt,
        image_roots=absolute_image_roots(popts.reward_image_roots, missing),
    )
    for kind, config_type, prefix in (("prm", PRMConfig, PRM_PREFIX), ("judge", JudgeConfig, JUDGE_PREFIX)):
        if kind in by_kind:
            r = by_kind[kind]
            component = config_from_flags(
                popts,
                config_type,
                prefix=prefix,
                dest_prefix=f"reward_{kind}_",
                model=r.name,
                path=r.path or r.repo_id,
            )
            setattr(plan, kind, component)
    try:
        weights = parse_weights(popts.reward_weights)
    except ConfigError as exc:
        raise FlagError(str(exc), "--reward.weights") from None
    if popts.reward_outcome_enable or "outcome" in weights:
        plan.outcome = config_from_flags(
            popts, OutcomeConfig, prefix=OUTCOME_PREFIX, dest_prefix="reward_outcome_"
        )
    for name in weights:
        if name not in plan.components:
            raise FlagError(
                f"--reward.weights gives a weight to {name!r} but that component is not configured "
                f"(active: {', '.join(plan.components) or 'none'})",
                "--reward.weights",
            )
    plan.weights = {name: weights.get(name, 1.0) for name in plan.components}
    return plan


# ----------------------------------------------------------------------------- checks and plans
def _check_combination(
    plan: RewardPlan | None, ns: SimpleNamespace, explicit: list[str], notes: list[str], dry_run: bool
) -> None:
    uses_remote = bool(ns.reward.remote_url) or bool(ns.train.agent_func_path)
    if plan is None:
        if explicit:
            raise FlagError(
                f"{explicit[0]} configures the plugin's reward, but no plugin reward model is set: pass "
                f"{_MODEL_FLAG} visualprm (or mr-judge, a checkpoint path, a comma-separated list), or drop the flag",
                explicit[0],
            )
        return
    if not plan.components:
        raise FlagError("no reward component configured", _MODEL_FLAG)
    if uses_remote:
        flag = "--train.agent_func_path" if ns.train.agent_func_path else "--reward.remote_url"
        raise FlagError(
            f"{flag} and plugin reward models exclude each other: OpenRLHF takes rewards from {flag} and would "
            "never call the reward actor. Use a reward_fns/ file as --reward.remote_url instead, or drop it.",
            flag,
        )
    if plan.outcome is not None and not ns.data.label_key:
        raise FlagError(
            "the outcome reward reads the ground truth from the label column: set --data.label_key",
            "--data.label_key",
        )
    if plan.judge is not None and plan.n_samples_per_prompt < 2 and plan.judge.schedule != "reference":
        raise FlagError(
            f"the judge schedule {plan.judge.schedule!r} compares the responses of one prompt: "
            "set --rollout.n_samples_per_prompt >= 2",
            "--rollout.n_samples_per_prompt",
        )
    if plan.prm is not None:
        notes.extend(credit_notes(plan))
    if plan.judge is not None:
        check_judge_balance(plan)
        if plan.judge.schedule == "knockout":
            notes.append(
                "--reward.judge.schedule knockout: rewards are bracket positions (the champion 1, first-round "
                "losers 0), a full reward spread whatever the judge's skill, even from a judge that picks at "
                "random; they rank for best-of-N, they are not a learning signal: use listwise for RL"
            )
    if (plan.prm or plan.judge) and not plan.image_roots:
        notes.append(
            "no --reward.image_roots: image paths from the data will be refused by the reward actors (bytes and "
            "data: URIs still work); set the folder(s) the images live in"
        )
    if ns.algo.dynamic_filtering_enable:
        notes.append(
            "dynamic filtering reads scores from vLLM-side rewards; the reward actor path cannot feed it"
        )
    missing = [m for m in (plan.prm, plan.judge) if m is not None and not os.path.isdir(m.path or "")]
    for model in missing:
        fetch = f"fetch it first (hf download {model.path}) or pass a local checkpoint folder"
        if not dry_run and not envs.is_set(SKIP_MODEL_CHECK_ENV):
            raise FlagError(
                f"reward model {model.model} ({model.path}) is not on this machine and the reward actors never "
                f"download: {fetch}. If only the reward nodes have it, set {SKIP_MODEL_CHECK_ENV}=1.",
                _MODEL_FLAG,
            )
        notes.append(f"{model.model}: not on this machine ({model.path}); {fetch}")


def gpu_plan(ns: SimpleNamespace, plugin_reward: bool) -> dict:
    """GPUs each role asks Ray for, following OpenRLHF's ``train()`` (colocation included)."""
    actor = ns.actor.num_nodes * ns.actor.num_gpus_per_node
    ref = ns.ref.num_nodes * ns.ref.num_gpus_per_node if ns.algo.kl.init_coef > 0 else 0
    critic = ns.critic.num_nodes * ns.critic.num_gpus_per_node if ns.critic.model_name_or_path else 0
    reward = ns.reward.num_nodes * ns.reward.num_gpus_per_node if not ns.reward.remote_url else 0
    vllm = (ns.vllm.num_engines or 0) * ns.vllm.tensor_parallel_size
    if ns.train.colocate_all:
        # one placement group on the actor's GPUs holds every model; async keeps vLLM outside it
        total = actor + (vllm if ns.train.async_enable else 0)
    else:
        total = actor + (0 if ns.train.colocate_actor_ref else ref) + vllm
        total += max(critic, reward) if ns.train.colocate_critic_reward else critic + reward
    return {
        "actor": actor,
        "reference": ref,
        "critic": critic,
        "reward": reward,
        "reward_actor": "plugin RewardActor (VisualPRM / judge / outcome)" if plugin_reward else "OpenRLHF",
        "vllm": vllm,
        "colocate_all": bool(ns.train.colocate_all),
        "colocate_actor_ref": bool(ns.train.colocate_actor_ref),
        "colocate_critic_reward": bool(ns.train.colocate_critic_reward),
        "total_gpus": total,
    }


def gpu_summary(g: dict) -> str:
    """One line: the GPUs each role asks Ray for and the total the cluster must have."""
    nodes = -(-g["total_gpus"] // 8)
    fits = "fits one 8-GPU node" if nodes <= 1 else f"at least {nodes} nodes of 8 GPUs"
    return (
        f"GPUs: actor {g['actor']}, reference {g['reference']}, critic {g['critic']}, reward {g['reward']} "
        f"({g['reward_actor']}), vLLM {g['vllm']}; total {g['total_gpus']} ({fits})"
    )


def prepare(argv: list[str]) -> LaunchPlan:
    """Everything up to (not including) starting Ray. Raises :class:`FlagError`."""
    popts, rest = parse_plugin_flags(argv)
    tokens, renamed = rename_legacy(rest)
    missing: list[str] = []  # local paths that do not exist: --dry-run reports them, a launch refuses
    models, _stock = _plugin_models(tokens, popts.reward_judge_model)
    sources = (_MODEL_FLAG, "--reward.remote_url", "--train.agent_func_path")
    if not models and all(_find_value(tokens, flag)[1] is None for flag in sources):
        raise FlagError(
            f"no reward source: set {_MODEL_FLAG} (visualprm, visualprm-v1, mr-judge, a checkpoint path or a "
            "comma-separated list), --reward.remote_url (e.g. a reward_fns/ file) or --train.agent_func_path",
            _MODEL_FLAG,
        )
    try:
        ns = openrlhf_cli.parse_and_validate(tokens)
    except openrlhf_cli.FlagError as exc:
        if exc.flag and "unrecognized arguments" in str(exc):
            raise _unknown_flag_error(exc.flag, "OpenRLHF 0.11 does not know it") from None
        raise FlagError(str(exc), exc.flag) from None
    absolute_data_paths(tokens, missing)  # after OpenRLHF's parser: its flag errors come first
    notes: list[str] = []
    plan = build_reward_plan(popts, models, ns, missing) if models else None
    if plan is None and (popts.reward_outcome_enable or "outcome" in popts.reward_weights):
        plan = build_reward_plan(popts, models, ns, missing)  # outcome-only reward
    _check_combination(plan, ns, _explicit_plugin_flags(argv) if plan is None else [], notes, popts.dry_run)
    preflight.check_generation(ns, missing, notes, popts.dry_run)
    preflight.check_critic(ns, tokens, plan is not None, missing, notes)
    preflight.check_data_columns(
        ns, {flag: _find_value(tokens, flag)[1] for flag in DATA_PATH_FLAGS}, missing
    )
    refusals = [f"would refuse to launch: {m}" for m in missing]
    if missing and not popts.dry_run:
        flag = missing[0].split(":")[0]
        raise FlagError(missing[0] + ("" if len(missing) == 1 else f" (and {len(missing) - 1} more)"), flag)
    return LaunchPlan(
        openrlhf_argv=tokens,
        namespace=ns,
        reward_plan=plan,
        gpu_plan=gpu_plan(ns, plan is not None),
        renamed=renamed,
        models=[m.to_dict() for m in models],
        notes=notes,
        refusals=refusals,
        dry_run=popts.dry_run,
        as_json=popts.json,
    )


# ----------------------------------------------------------------------------- output and launch
def format_dry_run(plan: LaunchPlan) -> str:
    if plan.as_json:
        return json.dumps(plan.to_dict(), indent=2, default=str)
    import shlex

    verdict = "REFUSED, nothing started" if plan.refusals else "nothing started"
    lines = [
        f"openrlhf-visualprm train --dry-run: {verdict}. Plan:",
        f"OpenRLHF argv (run by `openrlhf-visualprm train`, which installs the plugin's reward actor and hooks"
        f" around {openrlhf_cli.MODULE}; not a stock command):",
        "    " + " ".join(shlex.quote(t) for t in plan.openrlhf_argv),
    ]
    if plan.renamed:
        lines.append("renamed legacy flags: " + ", ".join(f"{a} -> {b}" for a, b in plan.renamed))
    rp = plan.reward_plan
    if rp is None:
        lines.append("reward: OpenRLHF's own (no plugin reward components)")
    else:
        lines.append(f"reward components: {', '.join(f'{c} x {rp.weights[c]:g}' for c in rp.components)}")
        if rp.prm:
            mode = (
                f"credit {rp.prm.credit} (returns on step-end tokens; {', '.join(rp.credited)} credited)"
                if rp.dense_active
                else f"credit off: scalar ({rp.prm.aggregation})"
            )
            lines.append(f"  prm: {rp.prm.model} [{rp.prm.path}] {mode}, method {rp.prm.method}")
        if rp.judge:
            j = rp.judge
            lines.append(
                f"  judge: {j.model} [{j.path}] {j.schedule} x{j.rounds} K={j.group_size} ({j.backend})"
            )
        if rp.outcome:
            lines.append(f"  outcome: {rp.outcome.checker} on label[{rp.outcome.answer_key!r}]")
        lines.append(f"  estimator {rp.estimator}, groups of {rp.n_samples_per_prompt}")
    lines.append(gpu_summary(plan.gpu_plan))
    lines.extend(f"note: {n}" for n in plan.notes)
    lines.extend(plan.refusals)
    return "\n".join(lines)


def launch(plan: LaunchPlan) -> None:
    """Start Ray with the worker hook, install the driver hooks, run OpenRLHF's CLI."""
    import ray

    from openrlhf_visualprm.plugin.worker_hook import install_driver_hooks

    env = {key: os.environ.get(key, default) for key, default in OPENRLHF_ENV_DEFAULTS.items()}
    os.environ.update(env)
    if plan.reward_plan is not None:
        env[PLAN_ENV] = plan.reward_plan.to_json()
        os.environ[PLAN_ENV] = env[PLAN_ENV]
    if not ray.is_initialized():
        ray.init(runtime_env={"env_vars": env, "worker_process_setup_hook": WORKER_HOOK})
    else:
        print(
            "[openrlhf-visualprm] Ray was already initialised: make sure its runtime_env has "
            f"worker_process_setup_hook={WORKER_HOOK} and {PLAN_ENV}",
            file=sys.stderr,
        )
    install_driver_hooks(plan.reward_plan)
    saved = sys.argv
    sys.argv = [openrlhf_cli.MODULE, *plan.openrlhf_argv]
    try:
        runpy.run_module(openrlhf_cli.MODULE, run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved


HELP = """\
usage: openrlhf-visualprm train [OPENRLHF FLAGS] [PLUGIN FLAGS] [--dry-run [--json]]

Runs OpenRLHF 0.11's train_ppo_ray with multimodal reward models. Every OpenRLHF 0.11 flag is
accepted unchanged; legacy flat names (--pretrain, --reward_pretrain, --advantage_estimator,
--n_samples_per_prompt, --prompt_data, ...) are renamed. --reward_pretrain /
--reward.model_name_or_path take visualprm, visualprm-v1, mr-judge, a local checkpoint or a
comma-separated combination (one PRM, one judge).

Plugin flags:
"""


def print_help() -> None:
    import argparse

    from openrlhf_visualprm.plugin.options import build_parser

    parser = build_parser()
    parser.usage = argparse.SUPPRESS
    print(HELP + parser.format_help())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or "-h" in argv or "--help" in argv:  # anywhere, as argparse reads it
        print_help()
        return 0
    try:
        plan = prepare(argv)
    except FlagError as exc:
        print(f"openrlhf-visualprm train: error: {exc}", file=sys.stderr)
        return 2
    if plan.dry_run:
        print(format_dry_run(plan))
        for refusal in plan.refusals:
            print(f"openrlhf-visualprm train: error: {refusal}", file=sys.stderr)
        return 2 if plan.refusals else 0
    print(f"[openrlhf-visualprm] {gpu_summary(plan.gpu_plan)}", file=sys.stderr)
    for note in plan.notes:  # the plan's warnings, on every launch (not only --dry-run)
        print(f"[openrlhf-visualprm] note: {note}", file=sys.stderr)
    launch(plan)
    return 0
