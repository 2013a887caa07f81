"""Rows written in the released layouts (copied field for field from the public files, never
downloaded): VL-RewardBench's GitHub ``data.jsonl``, VisualPRM400K conversations as the public
pipeline writes them, geometry3k's current card. Expected values are counted by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from openrlhf_visualprm.cli import main as cli_main
from openrlhf_visualprm.data import visualprm400k as V
from openrlhf_visualprm.data.benchmarks import read_vlrewardbench
from openrlhf_visualprm.data.math_prompts import read_geometry3k
from openrlhf_visualprm.eval.judge_bench import evaluate_vlrewardbench
from openrlhf_visualprm.images import ImageRoots

# ------------------------------------------------------------------ VL-RewardBench (GitHub data.jsonl)

# (id, image_path, human_ranking): ids and paths as in vl-rewardbench/VL_RewardBench data/data.jsonl.
# The wildvision-battle and rlhf-v rows follow the same layout (folder = source dataset).
OFFICIAL_ROWS = [
    ("LRVInstruction-000000007746", "images/vlfeedback/LRVInstruction-000000007746.jpg", [1, 0]),
    (
        "jailbreak-typo-Illegal_Activitiy-62",
        "images/vlfeedback/jailbreak-typo-Illegal_Activitiy-62.jpg",
        [0, 1],
    ),
    ("wildvision-battle-3", "images/wildvision-battle/wildvision-battle-3.jpg", [0, 1]),
    ("hallucination_pair-12585", "images/povid/COCO_train2014_000000243176.jpg", [0, 1]),
    ("RLHF-V-Dataset-118", "images/rlhf-v/RLHF-V-Dataset-118.jpg", [1, 0]),
    ("RLAIF-V-14", "images/rlaif-v/RLAIF-V-14.jpg", [0, 1]),
    ("RLAIF-V-276", "images/rlaif-v/RLAIF-V-276.jpg", [0, 1]),
    ("mathverse_2714", "images/reasoning_tasks/mathverse_2714.png", [0, 1]),
    ("mmmu_pro_test_Art_35", "images/reasoning_tasks/mmmu_pro_test_Art_35.png", [0, 1]),
    ("mathverse_1649_1", "images/reasoning_tasks/mathverse_1649.png", [1, 0]),
]
# Official counts for these rows (folder -> group): general = vlfeedback 2 + wildvision-battle 1,
# hallucination = povid 1 + rlhf-v 1 + rlaif-v 2, reasoning = reasoning_tasks 3.
OFFICIAL_COUNTS = {"general": 3, "hallucination": 4, "reasoning": 3}


def _official_row(rid: str, image_path: str, ranking: list[int]) -> dict:
    return {
        "id": rid,
        "image_path": image_path,
        "query": f"question of {rid}",
        "response": [f"first answer of {rid}", f"second answer of {rid}"],
        "human_ranking": ranking,
        "models": ["m1", "m2"],
        "judge": "human",
        "rationale": None,
        "query_source": rid.split("-")[0],
        "meta": {},
        "human_error_analysis": ["others"],
    }


def _write_official(root: Path) -> Path:
    for i, (_rid, path, _rank) in enumerate(OFFICIAL_ROWS):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if path.endswith(".png") else "JPEG"
        Image.new("RGB", (32, 24), (20 * i, 100, 200 - 10 * i)).save(target, format=fmt)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(_official_row(*r)) + "\n" for r in OFFICIAL_ROWS))
    return data


def test_vlrb_category_from_image_folder():
    got = {rid: read_vlrewardbench(_official_row(rid, p, r), 1).category for rid, p, r in OFFICIAL_ROWS}
    assert got["LRVInstruction-000000007746"] == "general"  # a vlfeedback item, whatever its id
    assert got["jailbreak-typo-Illegal_Activitiy-62"] == "general"
    assert got["hallucination_pair-12585"] == "hallucination"
    assert got["RLHF-V-Dataset-118"] == "hallucination"
    assert got["mathverse_1649_1"] == "reasoning"
    counts = {c: list(got.values()).count(c) for c in set(got.values())}
    assert counts == OFFICIAL_COUNTS


def test_vlrb_unknown_image_folder_is_a_bad_line():
    row = _official_row("x-1", "images/somewhere-else/x-1.jpg", [0, 1])
    with pytest.raises(ValueError, match="somewhere-else"):
        read_vlrewardbench(row, 7)


def test_eval_judge_official_layout_groups_and_macro(tmp_path):
    data = _write_official(tmp_path)

    def always_first(images, query, first, second):
        assert len(images) == 1
        return 0

    rep = evaluate_vlrewardbench(
        data, always_first, tmp_path / "o", ImageRoots.of(tmp_path), {"judge": "first"}, progress=False
    )
    orig = rep["original_order"]
    assert {c: v["n"] for c, v in orig["by_category"].items()} == OFFICIAL_COUNTS
    # always-first is right in the original order exactly when human_ranking[0] == 0:
    # general 2/3 (LRV wrong), hallucination 3/4 (rlhf-v wrong), reasoning 2/3 (mathverse_1649_1 wrong)
    assert orig["by_category"]["general"]["accuracy"] == pytest.approx(2 / 3)
    assert orig["by_category"]["hallucination"]["accuracy"] == pytest.approx(3 / 4)
    assert orig["by_category"]["reasoning"]["accuracy"] == pytest.approx(2 / 3)
    assert orig["macro_accuracy"] == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)
    assert orig["overall"]["accuracy"] == pytest.approx(7 / 10)
    assert rep["counts"]["bad_lines"] == 0 and rep["counts"]["evaluated_items"] == 10


def test_eval_judge_cli_official_layout_reports_three_groups(tmp_path, monkeypatch, capsys):
    """The command end to end on the GitHub layout; the judge is scripted (content-aware: it
    always picks the response whose text says 'first answer', in whichever position it is shown)."""
    from openrlhf_visualprm.eval import judge_adapter

    def scripted(images, query, first, second):
        return 0 if first.startswith("first answer") else 1

    monkeypatch.setattr(judge_adapter, "load_pair_judge", lambda path, **kw: (scripted, "scripted"))
    data = _write_official(tmp_path)
    out = tmp_path / "out"
    argv = ["eval-judge", "--judge", "scripted", "--data", str(data), "--image-root", str(tmp_path)]
    assert cli_main([*argv, "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    # response 0 is right exactly when human_ranking[0] == 0, in both orders: 7 of 10 pairs.
    for key in ("original_order", "swapped_order", "both_orders_right"):
        cats = report[key]["by_category"]
        assert {c: v["n"] for c, v in cats.items()} == OFFICIAL_COUNTS
        assert {c: v["correct"] for c, v in cats.items()} == {
            "general": 2,
            "hallucination": 3,
            "reasoning": 2,
        }
        assert report[key]["macro_accuracy"] == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)
    assert set(report["by_source"]["original_order"]) == {
        "vlfeedback",
        "wildvision-battle",
        "povid",
        "rlhf-v",
        "rlaif-v",
        "reasoning_tasks",
    }
    printed = capsys.readouterr().out
    assert "general 66.7  hallucination 75.0  reasoning 66.7" in printed and "unknown" not in printed


def test_eval_judge_exits_nonzero_when_nothing_was_evaluated(tiny_judge_path, tmp_path, capsys):
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "no such layout"}) + "\n")
    argv = ["eval-judge", "--judge", str(tiny_judge_path), "--data", str(data), "--out", str(tmp_path / "o")]
    rc = cli_main([*argv, "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "evaluated nothing" in err and "nan" not in err.lower()


# ------------------------------------------------------------------ VisualPRM400K conversations

PIPELINE_RECORD = {  # item2conv_prm in visualprm_data_pipeline_postprocess.py, question with <image>\n
    "id": -1,
    "image": "geoqa/123.png",
    "conversations": [
        {"from": "system", "value": "PRM SYSTEM"},
        {
            "from": "human",
            "value": "### Question:\n<image>\nFind the angle.\n\n### Solution Process:\nAngle A is 40.",
        },
        {"from": "gpt", "value": "+"},
        {"from": "human", "value": "So the answer is 50."},
        {"from": "gpt", "value": "-"},
    ],
}


def test_v1_reader_strips_the_image_tag_after_the_question_header():
    rec = V.read_v1(PIPELINE_RECORD)
    assert rec.question == "Find the angle."
    assert rec.steps == ["Angle A is 40.", "So the answer is 50."] and rec.labels == [True, False]


def test_internvl_writer_round_trips_the_pipeline_layout_with_one_tag():
    out = V.to_internvl(V.read_v1(PIPELINE_RECORD))
    first = out["conversations"][1]["value"]
    assert first.count("<image>") == 1
    assert out["conversations"] == PIPELINE_RECORD["conversations"]


def test_v11_raw_question_with_tag_is_written_once():
    raw = {
        "image": "a.png",
        "question": "<image>\nFind x.",
        "answer": "3",
        "response": "x = 3",
        "steps_with_score": [{"step": "x = 3", "score": 1.0, "num_mc_correct": 16, "num_mc_total": 16}],
        "num_mc_sequences": 16,
    }
    out = V.to_internvl(V.read_v11_raw(raw))
    assert (
        out["conversations"][0]["value"] == "### Question:\n<image>\nFind x.\n\n### Solution Process:\nx = 3"
    )


# ------------------------------------------------------------------ geometry3k (current card)


def test_geometry3k_current_card_fields_are_read():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    record = {  # hiyouga/geometry3k: images, problem, answer, id, choices, ground_truth
        "images": [{"bytes": buf.getvalue(), "path": None}],
        "problem": "<image>Find x.",
        "answer": "5",
        "id": 2417,
        "choices": ["3", "4", "5", "6"],
        "ground_truth": "C",
    }
    item = read_geometry3k(record, 0)
    assert item.id == "2417"
    assert item.choices == ["3", "4", "5", "6"]
    assert item.meta["ground_truth"] == "C"
    assert item.answer == "5"


def test_geometry3k_ground_truth_letter_must_name_a_choice():
    record = {
        "images": [],
        "problem": "Find x.",
        "answer": "5",
        "id": 1,
        "choices": ["3", "4"],
        "ground_truth": "C",
    }
    with pytest.raises(ValueError, match="ground_truth"):
        read_geometry3k(record, 0)
