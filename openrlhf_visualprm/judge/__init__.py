"""MR. Judge: a reasoning VLM judges groups of responses; verdicts become per-response rewards.

Model math only: no Ray, no OpenRLHF. See :class:`MRJudge` and the modules ``template`` (the
prompt, sanitising untrusted candidates), ``parse`` (strict verdicts), ``schedule`` (who meets
whom), ``aggregate`` (verdicts -> rewards) and ``backends`` (HF generate, vLLM, scripted).
"""

from .aggregate import AGGREGATORS, CHANCE, aggregate
from .backends import HFBackend, ScriptedBackend, VLLMBackend, make_backend
from .judge import (
    DEFAULT_JUDGE_MODEL,
    JUDGE_ALIAS,
    JUDGE_MODEL_ENV,
    JudgeCall,
    JudgeGroup,
    JudgeResult,
    MRJudge,
    resolve_judge_model,
    summarize,
)
from .parse import ParsedVerdict, parse_verdict
from .schedule import SCHEDULES
from .template import DEFAULT_TEMPLATE, JudgeRequest, JudgeTemplate, render_user_text, sanitize_candidate

__all__ = [
    "AGGREGATORS",
    "CHANCE",
    "DEFAULT_JUDGE_MODEL",
    "DEFAULT_TEMPLATE",
    "JUDGE_ALIAS",
    "JUDGE_MODEL_ENV",
    "SCHEDULES",
    "HFBackend",
    "JudgeCall",
    "JudgeGroup",
    "JudgeRequest",
    "JudgeResult",
    "JudgeTemplate",
    "MRJudge",
    "ParsedVerdict",
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
