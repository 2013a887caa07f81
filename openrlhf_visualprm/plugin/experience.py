"""The experience hook: rewards from the plugin's reward actors, dense step rewards into returns.

``PluginExperienceMaker`` subclasses OpenRLHF's ``RemoteExperienceMaker``:

- ``make_experience``: when the rollout carries no rewards (no ``--reward.remote_url``), it
  submits all prompt groups of the step (prompt, label, images, decoded responses) to the reward
  actor group (one call per actor, Ray object refs), hands over to OpenRLHF's own
  ``make_experience`` so the policy / reference (/ critic) forward passes run while the rewards
  are computed, then collects the rewards and writes ``rewards`` / ``scores`` / ``info``. Until
  then the samples carry NaN placeholder rewards (OpenRLHF skips its reward-model call when
  rewards are present; a NaN that leaked would be loud, never a silent zero). Colocation follows
  OpenRLHF's own reward model: with ``colocate_all`` (or ``colocate_critic_reward`` and a critic)
  the rewards are awaited and the actors' CUDA cache emptied before the forwards start.
- ``compute_advantages_and_returns``: OpenRLHF's own, untouched. With ``--reward.prm.credit off``
  it is the stock computation, bit for bit (the PRM's scalar aggregate is one of the summed
  rewards). With a credit mode, :func:`openrlhf_visualprm.rewards.credit.group_returns` turns each
  group's step scores and outcomes into per-step returns ``R_k``; the hook puts ``R_k - R_{k+1}``
  on the token that completes step k and ``R_K`` on the response's last token, and adds these
  per-token rewards right where OpenRLHF turns rewards into returns (``get_cumulative_returns``,
  or ``get_advantages_and_returns`` for GAE), after its scalar shaping. So every token of step k
  gets ``R_k`` (gamma 1) plus what OpenRLHF makes of the remaining scalar (the judge, if any;
  the PRM and the outcome are credited, not in the scalar). What each OpenRLHF 0.11.2 estimator
  then does (``compute_advantages_and_returns``; all of them pass through one of those hooks):

  ==========================================  ===================================================
  reinforce, reinforce_baseline               returns = the credit returns (+ KL, + the judge
                                              scalar, baselined by reinforce_baseline); then
                                              whitened over the batch's action tokens.
  rloo, group_norm, dr_grpo, flash_reinforce  the scalar (judge) is shaped per group (leave-one-out,
                                              z-score, mean); returns = credit returns + that on
                                              the last token; advantages = returns, no whitening.
  gae                                         the per-token rewards join GAE's (text-only policies
                                              with a critic: OpenRLHF forbids a critic with images).
  ==========================================  ===================================================

  Credit returns computed for an experience but never passed through those hooks stop the run
  (DESIGN principle 4): OpenRLHF's advantage code changed.
- ``attach_rewards`` also logs the step's hacking diagnostics (``diag/*``,
  :mod:`openrlhf_visualprm.rewards.diagnostics`) into every sample's ``info``, so OpenRLHF's
  logger (TensorBoard / wandb) shows them every step.
"""

from __future__ import annotations

import itertools

import torch
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

from openrlhf_visualprm.errors import HostError
from openrlhf_visualprm.plugin.plan import DENSE_ESTIMATORS, RewardPlan
from openrlhf_visualprm.rewards.combine import combine, sample_logs
from openrlhf_visualprm.rewards.credit import group_returns, token_rewards
from openrlhf_visualprm.rewards.dense import place_step_rewards, step_end_tokens, token_char_ends
from openrlhf_visualprm.rewards.diagnostics import step_diagnostics
from openrlhf_visualprm.rewards.guard import check_failed_fraction

STEP_REWARDS_ATTR = "plugin_step_rewards"  # (B, A) tensor attached to an Experience in credit mode


def response_token_ids(experience, row: int) -> list[int]:
    """The generated tokens of one row: ``action_mask[t]`` marks ``sequences[t + 1]``."""
    mask = experience.action_mask[row].bool()
    return experience.sequences[row, 1:][mask].tolist()


def build_groups(samples_list, tokenizer, n: int, need_offsets: bool):
    """Prompt groups in rollout order, and for each sample ``(group, position, char ends, text)``.

    Groups are the contiguous runs of ``n`` rollout indices, exactly as OpenRLHF's estimators
    group them (``rewards.reshape(-1, n)`` over the original order).
    """
    groups: dict[int, dict] = {}
    where: list[list[tuple[int, int, list[int] | None]]] = []
    for exp in samples_list:
        rows = []
        for row, index in enumerate(exp.index):
            ids = response_token_ids(exp, row)
            if need_offsets:
                text, ends = token_char_ends(tokenizer, ids)
            else:
                text, ends = (
                    getattr(tokenizer, "tokenizer", tokenizer).decode(ids, skip_special_tokens=True),
                    None,
                )
            gid = index // n
            group = groups.setdefault(
                gid,
                {
                    "prompt": exp.prompts[row],
                    "label": exp.labels[row],
                    "images": _images(exp, row),
                    "slots": {},
                },
            )
            group["slots"][index % n] = text
            rows.append((gid, index % n, ends, text))
        where.append(rows)
    ordered = sorted(groups)
    payload = []
    for gid in ordered:
        g = groups[gid]
        if sorted(g["slots"]) != list(range(len(g["slots"]))):
            raise ValueError(
                f"prompt group {gid} has response slots {sorted(g['slots'])}: rollout order broken"
            )
        payload.append(
            {k: g[k] for k in ("prompt", "label", "images")}
            | {"responses": [g["slots"][i] for i in range(len(g["slots"]))]}
        )
    position = {gid: i for i, gid in enumerate(ordered)}
    where = [[(position[gid], pos, ends, text) for gid, pos, ends, text in rows] for rows in where]
    return payload, where


def _images(exp, row: int):
    images = getattr(exp, "images", None) or []
    return images[row] if row < len(images) else None


def _fill_logs(per_sample: list[dict[str, float]]) -> dict[str, list[float]]:
    """Same keys for every sample (OpenRLHF concatenates ``info`` tensors); a value undefined
    for a sample is filled with the batch mean of that key, which leaves the logged mean as is."""
    keys = sorted(set().union(*per_sample)) if per_sample else []
    out = {}
    for key in keys:
        present = [logs[key] for logs in per_sample if key in logs]
        mean = sum(present) / len(present)
        out[key] = [logs.get(key, mean) for logs in per_sample]
    return out


class PluginExperienceMaker(RemoteExperienceMaker):
    """OpenRLHF's experience maker with image-aware group rewards and dense step rewards."""

    def __init__(self, *args, reward_plan: RewardPlan | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward_plan = reward_plan if reward_plan is not None else RewardPlan.from_env()
        self._dense_by_mask: dict[int, torch.Tensor] = {}
        self._dense_used: set[int] = set()  # dense tensors OpenRLHF's return code actually received

    # ------------------------------------------------------------------ rewards
    def submit_rewards(self, groups: list[dict]) -> list:
        """Send every group of the step to the reward actors, one call (and one list) per actor;
        returns the Ray object refs without waiting."""
        group = self.reward_model_group
        if group is None:
            raise ValueError("the plugin reward plan is set but no reward actor group was created")
        effective = max(1, len(group._actor_handlers) // group.duplicate_actors)
        per_actor = -(-len(groups) // effective)  # ceil: contiguous chunks, in order
        chunks = [groups[i * per_actor : (i + 1) * per_actor] for i in range(effective)]
        return group.async_run_method_batch(method_name="score_payloads", groups=chunks)

    def collect_rewards(self, refs: list, n_groups: int) -> list[list[dict]]:
        import ray

        per_actor = ray.get(refs)[:: self.reward_model_group.duplicate_actors]
        results = list(itertools.chain.from_iterable(itertools.chain.from_iterable(per_actor)))
        if len(results) != n_groups:
            raise RuntimeError(f"reward actors returned {len(results)} group results for {n_groups} groups")
        return results

    def attach_rewards(self, samples_list, results: list[list[dict]], where) -> None:
        plan = self.reward_plan
        credited = plan.credited
        texts: dict[int, dict[int, str]] = {}
        for rows in where:
            for gi, pos, _, text in rows:
                texts.setdefault(gi, {})[pos] = text
        group_texts = {gi: [by_pos[p] for p in range(len(by_pos))] for gi, by_pos in texts.items()}
        returns = self._credit_returns(results, group_texts) if plan.dense_active else {}
        flat_logs: list[dict[str, float]] = []
        scalar: dict[int, dict[int, float]] = {}
        for exp, rows in zip(samples_list, where):
            rewards, scores, dense_rows = [], [], []
            for row, (gi, pos, ends, _) in enumerate(rows):
                result = results[gi][pos]
                reward, score = combine(result["components"], plan.weights, credited)
                scalar.setdefault(gi, {})[pos] = reward
                rewards.append(reward)
                scores.append(score)
                logs = sample_logs(result)
                if plan.dense_active:
                    ret = returns[gi][pos]
                    spans = (result.get("prm") or {}).get("spans") or []
                    if len(ret) > 1 and len(spans) < len(ret):
                        raise ValueError(
                            f"prompt group {gi} response {pos}: {len(ret)} scored steps but {len(spans)} step spans"
                        )
                    last = int(exp.action_mask[row].sum()) - 1  # the response's last token
                    positions = step_end_tokens(ends or [], spans[: len(ret) - 1]) + [last]
                    dense_rows.append(place_step_rewards(exp.action_mask[row], positions, token_rewards(ret)))
                    logs["reward/credit_return"] = ret[0]
                flat_logs.append(logs)
            exp.rewards = torch.tensor(rewards, dtype=torch.float32)
            exp.scores = torch.tensor(scores, dtype=torch.float32)
            exp.info["reward"] = exp.rewards
            exp.info["score"] = exp.scores
            if plan.dense_active:
                setattr(exp, STEP_REWARDS_ATTR, torch.stack(dense_rows))
        diagnostics = step_diagnostics(
            [results[gi] for gi in sorted(group_texts)],
            [group_texts[gi] for gi in sorted(group_texts)],
            [self._first_returns(gi, returns, scalar) for gi in sorted(group_texts)],
            plan.prm.max_steps if plan.prm is not None else None,
        )
        for logs in flat_logs:  # one number per step: every sample carries it, so the mean is it
            logs.update(diagnostics)
        logs = _fill_logs(flat_logs)
        start = 0
        for exp in samples_list:
            size = len(exp.index)
            for key, values in logs.items():
                exp.info[key] = torch.tensor(values[start : start + size], dtype=torch.float32)
            start += size

    @staticmethod
    def _first_returns(gi: int, returns: dict, scalar: dict) -> list[float]:
        """The first-token return of each response before whitening: the credit return, or the
        scalar reward minus its group mean (credit off)."""
        if gi in returns:
            return [r[0] for r in returns[gi]]
        values = [scalar[gi][p] for p in range(len(scalar[gi]))]
        mean = sum(values) / len(values)
        return [v - mean for v in values]

    def _credit_returns(
        self, results: list[list[dict]], texts: dict[int, list[str]]
    ) -> dict[int, list[list[float]]]:
        """Per group, the credit returns of its responses (``--reward.prm.credit``)."""
        plan = self.reward_plan
        return {
            gi: group_returns(
                results[gi], texts[gi], plan.weights, plan.prm.credit, plan.prm.credit_options()
            )
            for gi in texts
        }

    def submit_plugin_rewards(self, samples_list):
        n = self.strategy.args.rollout.n_samples_per_prompt
        groups, where = build_groups(samples_list, self.tokenizer, n, self.reward_plan.dense_active)
        return self.submit_rewards(groups), len(groups), where

    def collect_plugin_rewards(self, samples_list, pending) -> None:
        refs, n_groups, where = pending
        results = self.collect_rewards(refs, n_groups)
        check_failed_fraction(results, self.reward_plan.max_failed_fraction)  # too many bad groups: stop
        self.attach_rewards(samples_list, results, where)

    def _reward_blocks_forwards(self) -> bool:
        """Whether the reward actors share GPUs with the next forward passes (OpenRLHF's own rule
        for its reward model: wait and empty the cache first)."""
        train = self.strategy.args.train
        return bool(
            getattr(train, "colocate_all", False)
            or (getattr(train, "colocate_critic_reward", False) and self.critic_model_group is not None)
        )

    def make_experience(self, samples_list):
        if self.reward_plan is None or not samples_list or samples_list[0].rewards is not None:
            return super().make_experience(samples_list)
        import ray

        pending = self.submit_plugin_rewards(samples_list)
        if self._reward_blocks_forwards():
            ray.get(pending[0])
            ray.get(self.reward_model_group.async_run_method(method_name="empty_cache"))
        for exp in samples_list:  # OpenRLHF skips its reward model; overwritten below
            exp.rewards = torch.full((len(exp.index),), float("nan"))
        experiences = super().make_experience(samples_list)
        self.collect_plugin_rewards(experiences, pending)
        return experiences

    # ------------------------------------------------------------------ advantages
    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        plan = getattr(self, "reward_plan", None)
        dense_on = plan is not None and plan.prm is not None and plan.prm.credit != "off"
        # Dense off: stock OpenRLHF bit for bit, whatever an experience carries.
        self._dense_by_mask = {
            id(e.action_mask): getattr(e, STEP_REWARDS_ATTR)
            for e in experiences
            if dense_on
            and getattr(e, STEP_REWARDS_ATTR, None) is not None
            and self.advantage_estimator in DENSE_ESTIMATORS
        }
        self._dense_used: set[int] = set()
        try:
            experiences = super().compute_advantages_and_returns(experiences)
        finally:
            dense_by_mask, self._dense_by_mask = self._dense_by_mask, {}
        unused = set(dense_by_mask) - self._dense_used
        if unused:  # OpenRLHF computed returns without the hooks that add step rewards
            raise HostError(
                f"dense step rewards were computed for {len(unused)} of {len(dense_by_mask)} experiences but "
                f"OpenRLHF's advantage code ({self.advantage_estimator}) never passed them through "
                "get_cumulative_returns / get_advantages_and_returns: its advantage code changed. Use "
                "--reward.prm.credit off or a supported OpenRLHF version"
            )
        for e in experiences:
            dense = dense_by_mask.get(id(e.action_mask))
            if dense is not None:
                e.info["return"] = e.info["return"] + (dense * e.action_mask).sum(-1)
            if hasattr(e, STEP_REWARDS_ATTR):
                delattr(e, STEP_REWARDS_ATTR)  # not needed by the actors; do not ship it
        return experiences

    def _with_dense(self, rewards: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
        dense = self._dense_by_mask.get(id(action_mask))
        if dense is None:
            return rewards
        self._dense_used.add(id(action_mask))
        return rewards + dense.to(rewards.dtype)

    @torch.no_grad()
    def get_cumulative_returns(self, rewards, action_mask, gamma):
        return super().get_cumulative_returns(self._with_dense(rewards, action_mask), action_mask, gamma)

    @torch.no_grad()
    def get_advantages_and_returns(self, values, rewards, action_mask, gamma, lambd):
        return super().get_advantages_and_returns(
            values, self._with_dense(rewards, action_mask), action_mask, gamma, lambd
        )
