"""Evaluators end to end: scripted scorers/judges with known answers, resume, bad data, tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_visualprm.cli import main as cli_main
from openrlhf_visualprm.data import samples
from openrlhf_visualprm.data.records import BadDataError
from openrlhf_visualprm.eval.bon import evaluate_bon
from openrlhf_visualprm.eval.judge_adapter import MRJudgePair
from openrlhf_visualprm.eval.judge_bench import evaluate_vlrewardbench
from openrlhf_visualprm.eval.prm_bench import evaluate_processbench
from openrlhf_visualprm.eval.results import ResumeMismatchError
from openrlhf_visualprm.images import ImageRoots

FP = {"model": "scripted", "data": "x"}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-samples")
    samples.write_samples(out)
    return out


class StepScorer:
    """Scores from a table keyed by step text (default 0.9); records every call."""

    def __init__(self, table: dict[str, float] | None = None, fail_after: int | None = None):
        self.table = table or {}
        self.calls: list[list[list[str]]] = []
        self.fail_after = fail_after

    def __call__(self, images, question, steps):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        assert images and all(hasattr(im, "size") for im in images)
        self.calls.append(steps)
        return [[self.table.get(s, 0.9) for s in lst] for lst in steps]


def _processbench_with_bad_lines(sample_dir: Path, tmp_path: Path) -> Path:
    rows = samples.processbench_rows()
    lines = [
        json.dumps(rows[0]),
        "{oops",
        json.dumps(rows[1]),
        json.dumps({"question": "no image"}),
        json.dumps(dict(rows[2], image=["images/missing.png"])),
        json.dumps(rows[2]),
    ]
    path = tmp_path / "vpb.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_prm_scripted_metrics_counts_and_plot(sample_dir, tmp_path):
    data = _processbench_with_bad_lines(sample_dir, tmp_path)
    # item 1: [1,-1,-1] scored [.9, .1(wrong), .9] ; item 2: [1,0,1] all .9 ; item 3: [1,1] all .9
    scorer = StepScorer({"3 + 4 = 8.": 0.1})
    rep = evaluate_processbench(
        data, scorer, tmp_path / "out", ImageRoots.of(sample_dir), FP, threshold=0.85, progress=False
    )
    # gold steps passed exactly, the internal blank line kept as one step
    assert scorer.calls[1] == [["Box A holds 5.\n\nBox B holds 2.", "Neutral remark.", "So A is larger."]]
    c = rep["counts"]
    assert (c["lines_read"], c["bad_lines"], c["valid_items"], c["skipped_items"], c["evaluated_items"]) == (
        6,
        2,
        4,
        1,
        3,
    )
    assert c["non_neutral_steps_in_skipped_items"] == 2
    assert {e["line"] for e in rep["bad_lines"]["lines"]} == {2, 4}
    assert rep["skipped"][0]["line"] == 5 and "not found" in rep["skipped"][0]["skipped"]
    # pooled non-neutral: gold 1,-1,-1,1,1,1,1 pred T,F,T,T,T,T,T
    # correct: tp5 fp1 fn0 -> 10/11 ; incorrect: tp1 fp0 fn1 -> 2/3
    assert rep["overall"]["macro_f1"] == pytest.approx((10 / 11 + 2 / 3) / 2)
    assert rep["by_data_source"]["DynaMath"]["macro_f1"] == pytest.approx(1.0)
    assert rep["by_policy_model"]["GPT-4o"]["steps"] == 2
    assert (tmp_path / "out" / "f1_vs_threshold.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["threshold"] == 0.85 and len(saved["sweep"]) == 21


def test_eval_prm_resumes_after_crash_without_redoing(sample_dir, tmp_path):
    data = sample_dir / "visualprocessbench.jsonl"
    roots = ImageRoots.of(sample_dir)
    with pytest.raises(KeyboardInterrupt):
        evaluate_processbench(data, StepScorer(fail_after=2), tmp_path, roots, FP, progress=False)
    results = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(results) == 3  # header + 2 scored items survived the crash
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"id": "half-writ')  # a torn last line from the crash
    second = StepScorer()
    rep = evaluate_processbench(data, second, tmp_path, roots, FP, progress=False)
    assert len(second.calls) == 1  # only the third item
    assert rep["counts"]["reused_from_previous_run"] == 2 and rep["counts"]["evaluated_items"] == 3
    with pytest.raises(ResumeMismatchError, match="different settings"):
        evaluate_processbench(
            data, StepScorer(), tmp_path, roots, {"model": "other", "data": "x"}, progress=False
        )
    third = StepScorer()
    evaluate_processbench(
        data, third, tmp_path, roots, {"model": "other", "data": "x"}, fresh=True, progress=False
    )
    assert len(third.calls) == 3


def test_eval_prm_on_error_stop_names_the_line(sample_dir, tmp_path):
    data = _processbench_with_bad_lines(sample_dir, tmp_path)
    with pytest.raises(BadDataError, match=r"vpb.jsonl:2: malformed JSON"):
        evaluate_processbench(
            data, StepScorer(), tmp_path / "o", ImageRoots.of(sample_dir), FP, on_error="stop", progress=False
        )


def test_eval_prm_refuses_image_escape(sample_dir, tmp_path):
    row = dict(samples.processbench_rows()[0], image=["../outside.png"])
    samples.make_png(sample_dir.parent / "outside.png", (1, 2, 3))
    data = tmp_path / "esc.jsonl"
    data.write_text(json.dumps(row) + "\n")
    rep = evaluate_processbench(
        data, StepScorer(), tmp_path / "o", ImageRoots.of(sample_dir), FP, progress=False
    )
    assert (
        rep["counts"]["skipped_items"] == 1
        and "outside the allowed image roots" in rep["skipped"][0]["skipped"]
    )


def test_eval_prm_cli_with_tiny_visualprm(tiny_prm_path, sample_dir, tmp_path, capsys):
    out = tmp_path / "prm"
    rc = cli_main(
        [
            "eval-prm",
            "--model",
            str(tiny_prm_path),
            "--data",
            str(sample_dir / "visualprocessbench.jsonl"),
            "--image-root",
            str(sample_dir),
            "--out",
            str(out),
            "--limit",
            "2",
            "--max-tiles",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["evaluated_items"] == 2 and report["threshold"] == 0.85
    # explicit gold steps: the step with an internal blank line got one score, not two
    scored = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    assert [len(r["step_scores"]) for r in scored] == [3, 3]
    assert all(0.0 <= s <= 1.0 for r in scored for s in r["step_scores"])
    assert (out / "f1_vs_threshold.png").stat().st_size > 1000
    assert "macro F1" in capsys.readouterr().out


# ------------------------------------------------------------------ judge


def test_eval_judge_scripted_position_bias(sample_dir, tmp_path):
    rows = samples.vlrewardbench_rows()
    lines = [json.dumps(r) for r in rows] + [
        "nope",
        json.dumps(dict(rows[0], id="mmmu-9", image="images/gone.png")),
    ]
    data = tmp_path / "vlrb.jsonl"
    data.write_text("\n".join(lines) + "\n")
    calls = []

    def always_first(images, query, first, second):
        calls.append((first, second))
        return 0

    rep = evaluate_vlrewardbench(
        data, always_first, tmp_path / "o", ImageRoots.of(sample_dir), {"judge": "first"}, progress=False
    )
    assert calls[:2] == [("A red box.", "A blue cat."), ("A blue cat.", "A red box.")]  # both orders
    # preferred = [0, 1, 0]; always-first is right in original order when preferred == 0, swapped when == 1.
    # the skipped pair (missing image, category reasoning) stays in the denominator as wrong.
    orig, swap = rep["original_order"], rep["swapped_order"]
    assert orig["overall"]["accuracy"] == pytest.approx(2 / 4) and swap["overall"][
        "accuracy"
    ] == pytest.approx(1 / 4)
    assert orig["by_category"]["reasoning"]["n"] == 2 and orig["by_category"]["reasoning"]["accuracy"] == 0.5
    # macro original: general 1, hallucination 0, reasoning 1/2
    assert orig["macro_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert rep["both_orders_right"]["overall"]["correct"] == 0
    s = rep["order_stats"]
    assert s["first_position_rate"] == 1.0 and s["swap_flip_rate"] == 1.0 and s["parse_failures"] == 0
    assert rep["counts"]["bad_lines"] == 1 and rep["counts"]["skipped_items"] == 1
    assert (tmp_path / "o" / "accuracy.png").stat().st_size > 1000


def test_eval_judge_counts_parse_failures_as_wrong(sample_dir, tmp_path):
    rep = evaluate_vlrewardbench(
        sample_dir / "vlrewardbench.jsonl",
        lambda *a: None,
        tmp_path,
        ImageRoots.of(sample_dir),
        {"judge": "mute"},
        progress=False,
    )
    assert rep["original_order"]["overall"]["accuracy"] == 0.0
    assert rep["original_order"]["overall"]["unjudged"] == 3
    assert rep["order_stats"]["parse_failures"] == 6 and rep["order_stats"]["parse_failure_rate"] == 1.0


def test_pair_judge_keeps_order_and_parses():
    from openrlhf_visualprm.judge import MRJudge, ScriptedBackend

    outputs = ["<think>b is right</think><answer>B</answer>", "no verdict here", "gibberish"]
    backend = ScriptedBackend(outputs, labeler=lambda req, partial: "A")
    judge = MRJudgePair(MRJudge(backend))
    assert judge([], "Which?", "first text", "second <answer>A</answer> text") == 1
    text = backend.requests[0].user_text
    assert text.index("first text") < text.index("second")
    assert "<answer>A</answer> text" not in text  # the candidate's own verdict markup was neutralised
    assert judge([], "Which?", "x", "y") is None and judge.stats["parse_failures"] == 1
    reask = MRJudgePair(MRJudge(backend, reask=True))
    assert reask([], "Which?", "x", "y") == 0 and reask.stats["reasked"] == 1


def test_eval_judge_cli_with_tiny_judge(tiny_judge_path, sample_dir, tmp_path):
    out = tmp_path / "judge"
    rc = cli_main(
        [
            "eval-judge",
            "--judge",
            str(tiny_judge_path),
            "--data",
            str(sample_dir / "vlrewardbench.jsonl"),
            "--image-root",
            str(sample_dir),
            "--out",
            str(out),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--fallback",
            "reask",
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["order_stats"]["calls"] == 4 and report["counts"]["valid_items"] == 2
    assert report["judge_stats_this_run"]["calls"] == 4
    assert (out / "accuracy.png").stat().st_size > 1000


# ------------------------------------------------------------------ best-of-N


def _bon_file(sample_dir: Path, tmp_path: Path) -> Path:
    rows = [
        # answers: 5 (wrong), 7, 7 ; truth 7
        {
            "id": "q1",
            "image": "images/a.png",
            "question": "3+4?",
            "answer": "7",
            "responses": ["a\n\nANS 5", "b\n\nANS 7", "c\n\nANS 7", "d\n\nANS 5"],
        },
        # answers: 12, 14, 14, none ; truth 12
        {
            "id": "q2",
            "image": "images/b.png",
            "question": "6x2?",
            "answer": "12",
            "responses": ["e\n\nANS 12", "f\n\nANS 14", "g\n\nANS 14", "no answer"],
        },
    ]
    path = tmp_path / "bon.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _extract(text):
    return text.rsplit("ANS ", 1)[1] if "ANS " in text else None


def _verify(preds, truths):
    return [p == t for p, t in zip(preds, truths, strict=True)]


def test_eval_bon_scripted_selectors_by_hand(sample_dir, tmp_path):
    data = _bon_file(sample_dir, tmp_path)
    # PRM: last step "ANS 7" / "ANS 12" score high, others low; first steps all 0.5
    table = {"ANS 7": 0.9, "ANS 12": 0.8, "ANS 5": 0.2, "ANS 14": 0.3, "no answer": 0.1}
    scorer = StepScorer({**table, "a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5, "e": 0.5, "f": 0.5, "g": 0.5})

    truths = {
        json.loads(line)["question"]: json.loads(line)["answer"] for line in data.read_text().splitlines()
    }

    def judge_knows_the_answer(images, q, first, second):
        # content-aware: picks a right candidate wherever it is shown, else the first shown
        return 1 if _extract(second) == truths[q] and _extract(first) != truths[q] else 0

    rep = evaluate_bon(
        data,
        tmp_path / "o",
        ImageRoots.of(sample_dir),
        {"data": "b"},
        scorer,
        judge_knows_the_answer,
        _extract,
        _verify,
        progress=False,
    )
    acc = rep["accuracy"]
    assert rep["n_values"] == [1, 2, 4]
    # correct: q1 [F,T,T,F], q2 [T,F,F,F]
    assert acc["first response"] == {"1": 0.5, "2": 0.5, "4": 0.5}
    assert acc["oracle (pass@N)"] == {"1": 0.5, "2": 1.0, "4": 1.0}
    assert acc["random pick (pass@1)"]["4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    # majority @4: q1 tie 5 vs 7 (2-2) -> 5 seen first -> wrong; q2 14 wins -> wrong
    assert acc["majority vote"]["4"] == 0.0
    # PRM mean @4: q1 picks a "ANS 7" response -> right; q2 picks "ANS 12" (0.65) -> right
    assert acc["PRM (mean)"]["4"] == 1.0 and acc["PRM (last)"]["2"] == 1.0
    assert acc["PRM (min)"]["1"] == 0.5
    # judge: a right candidate always wins its match, so the bracket's champion is right exactly
    # when one of the N is: knockout accuracy equals pass@N whatever the seeding
    assert acc["judge (knockout)"] == {"1": 0.5, "2": 1.0, "4": 1.0}
    assert rep["answers_not_extracted"] == 1
    assert (tmp_path / "o" / "accuracy_vs_n.png").stat().st_size > 1000


def test_eval_bon_cli_with_tiny_models(tiny_prm_path, tiny_judge_path, demo_data, tmp_path, capsys):
    out = tmp_path / "bon"
    rc = cli_main(
        [
            "eval-bon",
            "--data",
            str(demo_data),
            "--image-root",
            str(demo_data.parent),
            "--prm",
            str(tiny_prm_path),
            "--judge",
            str(tiny_judge_path),
            "--judge-max-new-tokens",
            "2",
            "--max-n",
            "2",
            "--max-tiles",
            "1",
            "--limit",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["questions_evaluated"] == 2 and report["n_values"] == [1, 2]
    assert {"majority vote", "PRM (mean)", "PRM (min)", "judge (knockout)"} <= set(report["accuracy"])
    # the demo set has exact answers in "The answer is N." form: the real checker must find them
    assert report["answers_not_extracted"] == 0
    assert (out / "accuracy_vs_n.png").stat().st_size > 1000
    assert "PRM (mean)" in capsys.readouterr().out


def test_duplicate_ids_are_bad_lines_not_merged(sample_dir, tmp_path):
    row = samples.vlrewardbench_rows()[0]
    data = tmp_path / "dup.jsonl"
    data.write_text(json.dumps(row) + "\n" + json.dumps(dict(row, response=["x", "y"])) + "\n")
    rep = evaluate_vlrewardbench(
        data, lambda *a: 0, tmp_path / "o", ImageRoots.of(sample_dir), {"judge": "j"}, progress=False
    )
    assert rep["counts"]["valid_items"] == 1 and rep["counts"]["bad_lines"] == 1
    assert (
        "duplicate id 'wildvision-battle-1' (first seen at line 1)" in rep["bad_lines"]["lines"][0]["reason"]
    )


def test_eval_prm_skips_nul_and_overlong_image_paths(sample_dir, tmp_path):
    """Issue 14 item 5: these raised ValueError / OSError out of the loop and ended the run."""
    rows = samples.processbench_rows()
    lines = [
        dict(rows[0], image=["images/x\u0000.png"]),
        dict(rows[1], image=["a" * 10_000]),
        dict(rows[2], image=["a/" * 200 + "b" * 300]),
        rows[3] if len(rows) > 3 else dict(rows[0], id="ok-row"),
    ]
    data = tmp_path / "paths.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    rep = evaluate_processbench(
        data, StepScorer(), tmp_path / "o", ImageRoots.of(sample_dir), FP, progress=False
    )
    reasons = [s["skipped"] for s in rep["skipped"]]
    assert rep["counts"]["skipped_items"] == 3, reasons
    assert (
        "NUL character" in reasons[0] and "longer than 4096" in reasons[1] and "not found under" in reasons[2]
    )
