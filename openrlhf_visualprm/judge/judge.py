"""``MRJudge``: judge groups of responses and turn verdicts into per-response rewards.

One *group* = the n responses a policy sampled for one image(s) + question. ``judge_groups``
plans every call of every group first and hands them to the backend as one batch (one batch per
bracket round for knockout), because generation is the expensive reward and only batching across
the whole RL step makes it affordable. Shuffles are seeded per group from ``seed`` and the group's
content, so a group gets the same schedule whether it is judged alone or in a batch.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import registry as _registry
from ..errors import ConfigError
from .aggregate import AGGREGATORS, CHANCE, FAILURE_POLICIES, Verdict, aggregate, combine_orders, pearson
from .backends import JudgeBackend, make_backend
from .config import DEFAULT_MAX_NEW_TOKENS, JudgeConfig
from .parse import parse_verdict
from .schedule import (
    REFERENCE,
    SCHEDULES,
    Matchup,
    knockout_advance,
    knockout_round,
    knockout_seeding,
    plan,
)
from .template import (
    DEFAULT_MAX_CANDIDATE_CHARS,
    DEFAULT_TEMPLATE,
    MAX_CANDIDATES,
    JudgeRequest,
    JudgeTemplate,
    render_user_text,
)

JUDGE_ALIAS = "mr-judge"
DEFAULT_JUDGE_MODEL = _registry.DEFAULT_JUDGE_MODEL
JUDGE_MODEL_ENV = _registry.JUDGE_MODEL_ENV
_DEFAULTS = JudgeConfig()  # the judge options' one set of defaults


def resolve_judge_model(name_or_path: str) -> str:
    """Local folder of a judge checkpoint, never downloading (the registry's one resolver).

    ``mr-judge`` means ``$OPENRLHF_VISUALPRM_JUDGE_MODEL`` (default Qwen/Qwen2.5-VL-7B-Instruct;
    no MR. Judge weights are public). A folder is used as is; a hub id must be in the local HF
    cache. The error says what was looked for and how to fetch it on a connected machine.
    """
    return _registry.require_local(str(name_or_path).strip(), kind="judge").path  # type: ignore[return-value]


def check_judge_checkpoint(path: str, name: str | None = None) -> None:
    """A judge is a chat VLM that reads the image: refuse, at load and by name, a VisualPRM
    (InternVL) checkpoint or a text-only model (their failures would otherwise surface as a Jinja
    or processor traceback, or as "bad data"). ``check-model`` does the same for the PRM."""
    import json

    from openrlhf_visualprm.errors import ModelError

    label = f"{name} ({path})" if name and name != path else str(path)
    kind = _registry.checkpoint_kind(path)
    if kind == "prm":
        raise ModelError(
            f"judge model {label} is a VisualPRM (InternVL) checkpoint, a process reward model, not a chat "
            "VLM judge: pass a chat VLM such as Qwen/Qwen2.5-VL-7B-Instruct (the mr-judge alias), and the PRM "
            "as the PRM (--model / --prm / --reward.model_name_or_path)"
        )
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return  # nothing to read: the loader reports it
    if kind is None:
        raise ModelError(
            f"judge model {label} has no vision config ({config.get('model_type', '?')}): the judge must see the "
            "image; pass a chat VLM such as Qwen/Qwen2.5-VL-7B-Instruct"
        )


@dataclass
class JudgeGroup:
    """Inputs of one group: the image(s) and question the policy saw, its responses, a reference."""

    images: Sequence[Any]
    question: str
    responses: Sequence[str]
    reference: str | None = None


@dataclass
class JudgeCall:
    """One judge call as it happened: the prompt, the raw output and what was read from it."""

    round: int
    kind: str
    order: tuple[int, ...]  # response ids in label order; -1 is the reference
    labels: tuple[str, ...]
    prompt: str  # the user text (the backend adds its chat template around it)
    raw_output: str
    choice: str | None  # parsed label, None when the parse failed
    winner: int | None  # response id behind the chosen label
    failure: str | None = None
    reasked: bool = False


@dataclass
class JudgeResult:
    rewards: list[float]
    calls: list[JudgeCall]
    stats: dict[str, Any]
    schedule: str
    aggregator: str
    best: int | None = None  # knockout champion, else the highest reward (first on ties)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    """Per-group working state while calls are planned and parsed."""

    group: JudgeGroup
    images: list
    rng: random.Random
    calls: list[JudgeCall] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)


def group_seed(seed: int, group: JudgeGroup) -> str:
    digest = hashlib.sha256()
    for part in (group.question, *group.responses, group.reference or ""):
        digest.update(part.encode("utf-8", "replace") + b"\x00")
    return f"{seed}:{digest.hexdigest()[:16]}"


class MRJudge:
    """Multimodal reasoning judge over groups of responses (MR. Judge protocol, our template).

    Each call shows the judge the image(s), the question and 2-4 candidates; it reasons and names
    the best. A schedule decides who meets whom, an aggregator turns the verdicts into one reward
    per response (chance is 0.5). All calls of all groups of a round go to the backend as one batch.

    Args:
        backend: what generates (``HFBackend``, ``VLLMBackend``, ``ScriptedBackend``; see ``make_backend``).
        schedule: ``listwise`` | ``pairwise`` | ``reference`` | ``knockout`` (see :mod:`.schedule`).
        k: candidates per listwise call (2..4).
        rounds: listwise rounds, each a fresh shuffle.
        aggregator: ``win_rate`` | ``borda`` | ``bradley_terry`` (see :mod:`.aggregate`).
        on_failure: ``neutral`` (an unparseable verdict is a tie) or ``skip`` (ignored); never a win.
        reask: one constrained second call for the letter before ``on_failure`` applies.
        seed: seeds every shuffle together with the group's content (same group, same calls).
        max_candidate_chars: a candidate longer than this is cut (None: no cap).
        template: the prompt template.
        image_roots: folders image paths must resolve into.
        bt_prior: Bradley-Terry prior strength.

    Raises:
        ValueError: an unknown schedule, aggregator or failure policy, or ``k``/``rounds`` out of range.
    """

    def __init__(
        self,
        backend: JudgeBackend,
        *,
        schedule: str = _DEFAULTS.schedule,
        k: int = _DEFAULTS.group_size,
        rounds: int = _DEFAULTS.rounds,
        aggregator: str = _DEFAULTS.aggregator,
        on_failure: str = _DEFAULTS.on_failure,
        reask: bool = False,
        seed: int = 0,
        max_candidate_chars: int | None = DEFAULT_MAX_CANDIDATE_CHARS,
        template: JudgeTemplate = DEFAULT_TEMPLATE,
        image_roots: Any = None,
        bt_prior: float = 0.1,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if aggregator not in AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
        if on_failure not in FAILURE_POLICIES:
            raise ConfigError(f"on_failure must be one of {FAILURE_POLICIES}, got {on_failure!r}")
        if not 2 <= k <= MAX_CANDIDATES:
            raise ConfigError(f"k (candidates per listwise call) must be 2..{MAX_CANDIDATES}, got {k}")
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        self.backend = backend
        self.schedule = schedule
        self.k = k
        self.rounds = rounds
        self.aggregator = aggregator
        self.on_failure = on_failure
        self.reask = reask
        self.seed = seed
        self.max_candidate_chars = max_candidate_chars
        self.template = template
        self.image_roots = image_roots
        self.bt_prior = bt_prior

    @classmethod
    def from_pretrained(
        cls,
        path_or_alias: str,
        backend: str = _DEFAULTS.backend,
        *,
        device: str = "cpu",
        dtype: Any = "auto",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 16,
        backend_kwargs: dict | None = None,
        **judge_kwargs: Any,
    ) -> MRJudge:
        """Load a judge from a folder, a cached hub id or the ``mr-judge`` alias (offline).

        Args:
            path_or_alias: a local folder, a hub id in the HF cache, or ``mr-judge``
                (``$OPENRLHF_VISUALPRM_JUDGE_MODEL``, default Qwen2.5-VL-7B-Instruct).
            backend: ``hf`` (transformers ``generate``) or ``vllm``.
            device: HF backend device.
            dtype: weights dtype name or ``auto``.
            max_new_tokens: the judge's reasoning budget per call.
            batch_size: HF backend calls per ``generate`` batch.
            backend_kwargs: further backend options.
            **judge_kwargs: :class:`MRJudge` options (schedule, rounds, ...).

        Returns:
            The judge, its backend loaded.

        Raises:
            ModelNotFoundError: the checkpoint is not on this machine (nothing is downloaded).
        """
        path = resolve_judge_model(path_or_alias)
        check_judge_checkpoint(path, str(path_or_alias))
        kw = dict(backend_kwargs or {})
        kw.setdefault("max_new_tokens", max_new_tokens)
        if "template" in judge_kwargs:
            kw.setdefault("template", judge_kwargs["template"])
        if backend == "hf":
            kw.update(device=device, dtype=dtype, batch_size=batch_size)
        elif backend == "vllm" and dtype not in (None, "auto"):
            kw.setdefault("llm_kwargs", {}).setdefault("dtype", str(dtype).replace("torch.", ""))
        return cls(make_backend(path, backend, **kw), **judge_kwargs)

    # -- public API ---------------------------------------------------------------------------
    def judge_group(
        self,
        images: Sequence[Any] | Any,
        question: str,
        responses: Sequence[str],
        reference: str | None = None,
    ) -> JudgeResult:
        """Rewards (one per response), per-call records and stats for one group."""
        return self.judge_groups([JudgeGroup(images, question, responses, reference)])[0]

    def judge_groups(self, groups: Sequence[JudgeGroup]) -> list[JudgeResult]:
        """Judge many groups with their calls batched together (one backend batch per round).

        Args:
            groups: each group's images, question, responses and optional reference.

        Returns:
            One :class:`JudgeResult` per group, in order: ``rewards`` (one per response), the calls
            as they happened, and stats (parse failures, first-position picks, ...).

        Raises:
            ValueError: a group with an empty question, no responses or an unusable image.
        """
        states = [self._prepare(g, idx) for idx, g in enumerate(groups)]
        if self.schedule == "knockout":
            self._run_knockout(states)
        else:
            planned: list[tuple[_State, Matchup]] = []
            for st in states:
                n = len(st.group.responses)
                planned += [(st, m) for m in plan(self.schedule, n, k=self.k, rounds=self.rounds, rng=st.rng)]
            self._run_calls(planned)
        return [self._finish(st) for st in states]

    def compare(self, images: Sequence[Any] | Any, question: str, candidates: Sequence[str]) -> JudgeCall:
        """One judge call with ``candidates`` shown exactly in the given order (no shuffling).

        Group schedules shuffle label order on purpose; measuring position bias (VL-RewardBench
        in both orders) and the best-of-N bracket need one call as asked. Same prompt, candidate
        sanitising, parser and re-ask as :meth:`judge_groups`.

        Args:
            images: the image(s) the candidates answer about (paths under ``image_roots``, PIL images).
            question: the question shown to the judge.
            candidates: 2 to ``MAX_CANDIDATES`` responses, in label order (A, B, ...).

        Returns:
            The :class:`JudgeCall`; ``winner`` is the index into ``candidates`` or None on a failed parse.

        Raises:
            ValueError: an empty question, a bad candidate count or an unusable image.
        """
        if not 2 <= len(candidates) <= MAX_CANDIDATES:
            raise ValueError(f"compare needs 2..{MAX_CANDIDATES} candidates, got {len(candidates)}")
        st = self._prepare(JudgeGroup(images, question, list(candidates)), 0, for_schedule=False)
        return self._run_calls([(st, Matchup(tuple(range(len(candidates))), 0, "listwise"))])[0]

    # -- internals ----------------------------------------------------------------------------
    def _prepare(self, group: JudgeGroup, idx: int, for_schedule: bool = True) -> _State:
        where = f"group {idx}"
        if not isinstance(group.question, str) or not group.question.strip():
            raise ValueError(f"{where}: question must be a non-empty string")
        if isinstance(group.responses, str) or not isinstance(group.responses, Sequence):
            raise TypeError(f"{where}: responses must be a list of strings")
        if len(group.responses) == 0:
            raise ValueError(f"{where}: no responses to judge")
        for j, resp in enumerate(group.responses):
            if not isinstance(resp, str):
                raise TypeError(f"{where}: response {j} is {type(resp).__name__}, expected str")
        if (
            for_schedule
            and self.schedule == "reference"
            and not (isinstance(group.reference, str) and group.reference.strip())
        ):
            raise ValueError(f"{where}: schedule 'reference' needs a non-empty reference solution")
        images = self._load_images(group.images, where)
        return _State(group, images, random.Random(group_seed(self.seed, group)))

    def _load_images(self, images: Any, where: str) -> list:
        from ..images import ImageRoots, load_image

        if images is None:
            return []
        if not isinstance(images, (list, tuple)):
            images = [images]
        roots = self.image_roots
        if roots is not None and not isinstance(roots, ImageRoots):
            roots = ImageRoots.of(roots)
        try:
            return [load_image(img, roots) for img in images]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def _request(self, st: _State, m: Matchup) -> JudgeRequest:
        g = st.group
        texts = [g.reference if resp == REFERENCE else g.responses[resp] for resp in m.order]
        user_text = render_user_text(
            g.question,
            texts,
            m.labels,
            kind="reference" if m.kind == "reference" else "listwise",
            template=self.template,
            max_candidate_chars=self.max_candidate_chars,
            special_tokens=self.backend.special_tokens,
        )
        return JudgeRequest(
            images=st.images, system=self.template.system, user_text=user_text, labels=m.labels
        )

    def _run_calls(self, planned: list[tuple[_State, Matchup]]) -> list[JudgeCall]:
        if not planned:
            return []
        requests = [self._request(st, m) for st, m in planned]
        outputs = self.backend.generate(requests)
        if len(outputs) != len(requests):
            raise RuntimeError(f"judge backend returned {len(outputs)} outputs for {len(requests)} requests")
        calls = []
        for (_, m), req, raw in zip(planned, requests, outputs, strict=True):
            parsed = parse_verdict(raw, m.labels)
            winner = m.order[m.labels.index(parsed.choice)] if parsed.ok else None
            calls.append(
                JudgeCall(
                    m.round,
                    m.kind,
                    m.order,
                    m.labels,
                    req.user_text,
                    raw,
                    parsed.choice,
                    winner,
                    parsed.reason,
                )
            )
        if self.reask:
            failed = [i for i, c in enumerate(calls) if c.choice is None]
            if failed:
                letters = self.backend.choose_label(
                    [requests[i] for i in failed], [calls[i].raw_output for i in failed]
                )
                for i, letter in zip(failed, letters, strict=True):
                    call = calls[i]
                    call.reasked = True
                    if letter in call.labels:
                        call.choice = letter
                        call.winner = call.order[call.labels.index(letter)]
                        call.failure = None
        for (st, _), call in zip(planned, calls, strict=True):
            st.calls.append(call)
        return calls

    def _run_knockout(self, states: list[_State]) -> None:
        for st in states:
            st.survivors = knockout_seeding(len(st.group.responses), st.rng)
        round_index = 0
        while any(len(st.survivors) > 1 for st in states):
            planned, byes = [], {}
            for st in states:
                if len(st.survivors) > 1:
                    matches, bye = knockout_round(st.survivors, round_index, st.rng)
                    planned += [(st, m) for m in matches]
                    byes[id(st)] = bye
            calls = self._run_calls(planned)
            advancing: dict[int, list[int]] = {}
            for (st, m), call in zip(planned, calls, strict=True):
                advancing.setdefault(id(st), []).append(knockout_advance(m, call.winner, st.rng))
            for st in states:
                if id(st) in byes:
                    # The bye goes first next round, so an odd one out does not sit out twice.
                    st.survivors = byes[id(st)] + advancing.get(id(st), [])
            round_index += 1

    def _finish(self, st: _State) -> JudgeResult:
        n = len(st.group.responses)
        verdicts = [
            Verdict(c.order, None if c.choice is None else c.labels.index(c.choice)) for c in st.calls
        ]
        rewards = aggregate(self.schedule, n, verdicts, self.aggregator, self.on_failure, self.bt_prior)
        if self.schedule == "knockout":
            best = st.survivors[0] if st.survivors else None
        else:
            best = max(range(n), key=lambda i: rewards[i]) if n else None
        return JudgeResult(
            rewards, st.calls, self._stats(st, verdicts, rewards), self.schedule, self.aggregator, best
        )

    def _stats(self, st: _State, verdicts: list[Verdict], rewards: list[float]) -> dict[str, Any]:
        n_calls = len(verdicts)
        valid = [v for v in verdicts if v.choice is not None]
        failures = sum(1 for c in st.calls if c.choice is None)
        flip_rate = None
        if self.schedule in ("pairwise", "reference") and verdicts:
            pairs = [p for p in combine_orders(verdicts, "neutral") if p.both_valid]
            flip_rate = sum(p.flipped for p in pairs) / len(pairs) if pairs else None
        lengths = [float(len(r)) for r in st.group.responses]
        return {
            "n_responses": len(st.group.responses),
            "n_calls": n_calls,
            "parse_failures": failures,
            "parse_failure_rate": failures / n_calls if n_calls else 0.0,
            "reasked": sum(c.reasked for c in st.calls),
            "first_position_pick_rate": sum(v.choice == 0 for v in valid) / len(valid) if valid else None,
            "first_position_chance": sum(1 / len(v.order) for v in valid) / len(valid) if valid else None,
            "swap_flip_rate": flip_rate,
            "reward_length_correlation": pearson(lengths, rewards),
            "reward_mean": sum(rewards) / len(rewards),
            "reward_spread": max(rewards) - min(rewards),
            "chance_reward": CHANCE,
        }


def summarize(results: Sequence[JudgeResult]) -> dict[str, Any]:
    """Step-level log numbers over many groups (rates over all calls, not a mean of rates)."""
    calls = [c for r in results for c in r.calls]
    valid = [c for c in calls if c.choice is not None]
    flips = [r.stats["swap_flip_rate"] for r in results if r.stats["swap_flip_rate"] is not None]
    corr = [
        r.stats["reward_length_correlation"]
        for r in results
        if r.stats["reward_length_correlation"] is not None
    ]
    return {
        "groups": len(results),
        "calls": len(calls),
        "parse_failure_rate": (len(calls) - len(valid)) / len(calls) if calls else 0.0,
        "first_position_pick_rate": sum(c.labels.index(c.choice) == 0 for c in valid) / len(valid)
        if valid
        else None,
        "swap_flip_rate": sum(flips) / len(flips) if flips else None,
        "reward_length_correlation": sum(corr) / len(corr) if corr else None,
        "mean_reward_spread": (
            sum(r.stats["reward_spread"] for r in results) / len(results) if results else math.nan
        ),
    }
