"""Metrics as pure functions: step F1 (VisualProcessBench), pair accuracy (VL-RewardBench), best-of-N.

Conventions (stated in every report):
- Step F1: neutral steps (label 0) are excluded. A step is predicted correct when its score is
  strictly above the threshold. Macro F1 averages the classes present in the gold labels or
  the predictions (scikit-learn's ``average="macro"``): a group whose steps are all correct and
  all predicted correct has macro F1 1.0, not 0.5. A class with gold members but no correct
  prediction has F1 0.0. No steps at all gives NaN.
- "overall" pools every step of every item; per-group figures pool the steps of that group;
  ``macro_over_sources`` is the plain mean of per-source macro F1 (a different number).
- Pair accuracy: a parse failure or an unusable item counts as wrong in ``accuracy``
  (correct / all); ``accuracy_valid`` divides by the judged items only. Macro accuracy is the
  mean of the per-category accuracies (for VL-RewardBench: over exactly its three groups).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence


def class_f1(gold: Sequence[bool], pred: Sequence[bool], positive: bool) -> dict:
    """Precision, recall, F1 and support of one class (``positive`` is the class value)."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} labels but pred has {len(pred)}")
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred, strict=True))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred, strict=True))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def step_f1(gold_labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict:
    """Per-class and macro F1 over non-neutral steps (labels 1 / -1 / 0)."""
    if len(gold_labels) != len(scores):
        raise ValueError(f"{len(gold_labels)} labels but {len(scores)} scores")
    gold, pred = [], []
    for lab, s in zip(gold_labels, scores, strict=True):
        if lab == 0:
            continue
        gold.append(lab == 1)
        pred.append(s > threshold)
    correct = class_f1(gold, pred, True)
    incorrect = class_f1(gold, pred, False)
    # Like scikit-learn's average="macro": average over the classes present in gold or predictions.
    present = [r for cls, r in ((True, correct), (False, incorrect)) if cls in gold or cls in pred]
    return {
        "threshold": threshold,
        "steps": len(gold),
        "neutral_excluded": len(gold_labels) - len(gold),
        "correct": correct,
        "incorrect": incorrect,
        "macro_f1": sum(r["f1"] for r in present) / len(present) if present else math.nan,
        "classes_in_macro": len(present),
    }


def grouped_step_f1(
    items: Iterable[dict], threshold: float, keys: Sequence[str] = ("data_source", "policy_model")
) -> dict:
    """``items``: dicts with ``labels``, ``step_scores`` and the grouping keys. Pooled and per group."""
    items = list(items)
    pooled_labels = [lab for it in items for lab in it["labels"]]
    pooled_scores = [s for it in items for s in it["step_scores"]]
    report = {
        "threshold": threshold,
        "items": len(items),
        "overall": step_f1(pooled_labels, pooled_scores, threshold),
    }
    for key in keys:
        groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for it in items:
            labs, scs = groups[str(it.get(key, "unknown"))]
            labs.extend(it["labels"])
            scs.extend(it["step_scores"])
        report[f"by_{key}"] = {g: step_f1(labs, scs, threshold) for g, (labs, scs) in sorted(groups.items())}
    by_source = report.get("by_data_source", {})
    report["macro_over_sources"] = (
        sum(v["macro_f1"] for v in by_source.values()) / len(by_source) if by_source else math.nan
    )
    return report


def threshold_sweep(
    gold_labels: Sequence[int], scores: Sequence[float], thresholds: Sequence[float]
) -> list[dict]:
    """Macro F1 (and per class) for each threshold."""
    out = []
    for t in thresholds:
        r = step_f1(gold_labels, scores, t)
        out.append(
            {
                "threshold": t,
                "macro_f1": r["macro_f1"],
                "f1_correct": r["correct"]["f1"],
                "f1_incorrect": r["incorrect"]["f1"],
            }
        )
    return out


def default_thresholds(step: float = 0.05) -> list[float]:
    n = round(1 / step)
    return [round(i * step, 6) for i in range(n + 1)]


# --------------------------------------------------------------------------- pair accuracy


def accuracy_report(
    outcomes: Sequence[bool | None], categories: Sequence[str], groups: Sequence[str] | None = None
) -> dict:
    """``outcomes``: True correct, False wrong, None unjudged (parse failure / skipped) = wrong.

    With ``groups`` (VL-RewardBench: general, hallucination, reasoning) the report has exactly
    those categories, in that order, and the macro accuracy is the mean over all of them: NaN
    when one has no items (a macro over fewer groups is a different number). A category
    outside ``groups`` is an error, never a fourth group.
    """
    if len(outcomes) != len(categories):
        raise ValueError(f"{len(outcomes)} outcomes but {len(categories)} categories")
    per: dict[str, list] = defaultdict(list)
    for o, c in zip(outcomes, categories, strict=True):
        per[c].append(o)
    if groups is not None:
        extra = sorted(set(per) - set(groups))
        if extra:
            raise ValueError(f"categories {extra} are not among the report's groups {list(groups)}")

    def acc(vals: list) -> dict:
        n = len(vals)
        correct = sum(v is True for v in vals)
        judged = sum(v is not None for v in vals)
        return {
            "n": n,
            "correct": correct,
            "unjudged": n - judged,
            "accuracy": correct / n if n else math.nan,
            "accuracy_valid": correct / judged if judged else math.nan,
        }

    if groups is None:
        by_cat = {c: acc(v) for c, v in sorted(per.items())}
    else:
        by_cat = {g: acc(per.get(g, [])) for g in groups}
    overall = acc(list(outcomes))
    macro = sum(v["accuracy"] for v in by_cat.values()) / len(by_cat) if by_cat else math.nan
    return {"overall": overall, "macro_accuracy": macro, "by_category": by_cat}


def order_stats(verdicts: Sequence[tuple[int | None, int | None]]) -> dict:
    """Position-bias statistics of pairs judged in both orders.

    Each entry is ``(pick_in_original_order, pick_in_swapped_order)``, each the index *as
    shown* (0 = first shown) or ``None`` on a parse failure. Consistent = both orders pick the
    same underlying response (``a == 0 and b == 1`` or ``a == 1 and b == 0``).
    """
    shown = [p for pair in verdicts for p in pair]
    valid = [p for p in shown if p is not None]
    both = [(a, b) for a, b in verdicts if a is not None and b is not None]
    consistent = sum(a != b for a, b in both)
    return {
        "calls": len(shown),
        "parse_failures": len(shown) - len(valid),
        "parse_failure_rate": (len(shown) - len(valid)) / len(shown) if shown else math.nan,
        "first_position_rate": sum(p == 0 for p in valid) / len(valid) if valid else math.nan,
        "pairs_both_parsed": len(both),
        "swap_consistent_rate": consistent / len(both) if both else math.nan,
        "swap_flip_rate": (len(both) - consistent) / len(both) if both else math.nan,
    }


# --------------------------------------------------------------------------- best-of-N


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the first response whose answer is the most frequent; ``None`` if no answers.

    Ties go to the answer that appears first (deterministic, no randomness in reports).
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    for i, a in enumerate(answers):
        if a is not None and counts[a] == best:
            return i
    return None  # pragma: no cover


def argmax_first(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the earliest; NaN never wins."""
    best, best_i = -math.inf, 0
    for i, s in enumerate(scores):
        if s is not None and not math.isnan(s) and s > best:
            best, best_i = s, i
    return best_i


def n_values(n: int) -> list[int]:
    """1, 2, 4, ... up to and including ``n``."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    out.append(n)
    return out
