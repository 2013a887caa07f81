"""MR. Judge: a reasoning VLM judges groups of responses; verdicts become per-response rewards.

Model math only: no Ray, no OpenRLHF. See :class:`MRJudge` and the modules ``template`` (the
prompt, sanitising untrusted candidates), ``parse`` (strict verdicts), ``schedule`` (who meets
whom), ``aggregate`` (verdicts -> rewards) and ``backends`` (HF generate, vLLM, scripted).

Names are imported lazily (``from openrlhf_visualprm.judge import MRJudge``): the parser, template
and schedule stay free of torch, which only the backends and ``MRJudge`` load.
"""

from __future__ import annotations

from openrlhf_visualprm.lazy import lazy_exports

from .aggregate import AGGREGATORS, CHANCE, aggregate
from .parse import ParsedVerdict, parse_verdict
from .schedule import SCHEDULES
from .template import DEFAULT_TEMPLATE, JudgeRequest, JudgeTemplate, render_user_text, sanitize_candidate

# torch-free names above are imported eagerly (``aggregate`` is also a submodule name, which a lazy
# lookup would shadow); the backends and MRJudge load on first use.

_LAZY = {
    "HFBackend": "backends",
    "ScriptedBackend": "backends",
    "VLLMBackend": "backends",
    "make_backend": "backends",
    "DEFAULT_JUDGE_MODEL": "judge",
    "JUDGE_ALIAS": "judge",
    "JUDGE_MODEL_ENV": "judge",
    "JudgeCall": "judge",
    "JudgeGroup": "judge",
    "JudgeResult": "judge",
    "MRJudge": "judge",
    "resolve_judge_model": "judge",
    "summarize": "judge",
}

__all__ = [
    "AGGREGATORS",
    "CHANCE",
    "DEFAULT_JUDGE_MODEL",
    "DEFAULT_TEMPLATE",
    "HFBackend",
    "JUDGE_ALIAS",
    "JUDGE_MODEL_ENV",
    "JudgeCall",
    "JudgeGroup",
    "JudgeRequest",
    "JudgeResult",
    "JudgeTemplate",
    "MRJudge",
    "ParsedVerdict",
    "SCHEDULES",
    "ScriptedBackend",
    "VLLMBackend",
    "aggregate",
    "make_backend",
    "parse_verdict",
    "render_user_text",
    "resolve_judge_model",
    "sanitize_candidate",
    "summarize",
]


__getattr__ = lazy_exports(__name__, _LAZY)
