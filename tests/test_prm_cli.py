"""The PRM's command-line tools and the demo, run in-process on the tiny model."""

from __future__ import annotations

import json

from PIL import Image

from openrlhf_visualprm import cli
from openrlhf_visualprm.prm import template as T


def test_prm_prompt_prints_exact_text(capsys):
    rc = cli.main(
        [
            "prm-prompt",
            "--question",
            "Find x.",
            "--steps-json",
            '["a", "b"]',
            "--system-message",
            "S",
            "--num-tiles",
            "2",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out == T.render_prompt("S", "Find x.", ["a", "b"], [2])


def test_prm_prompt_rejects_bad_json(capsys):
    assert cli.main(["prm-prompt", "--question", "Q", "--steps-json", "{bad"]) == 2
    assert "--steps-json" in capsys.readouterr().err


def test_score_json_and_table(tiny_prm_path, tmp_path, capsys):
    img = tmp_path / "fig.png"
    Image.new("RGB", (600, 400), (10, 200, 30)).save(img)
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"response": "a\\n\\nb"}\n{"response": "c"}\n')
    args = [
        "score",
        "--model",
        str(tiny_prm_path),
        "--image",
        str(img),
        "--question",
        "Q",
        "--responses",
        str(responses),
    ]
    assert cli.main(args + ["--json", "--aggregation", "min"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [len(x["step_scores"]) for x in lines] == [2, 1]
    assert lines[0]["score"] == min(lines[0]["step_scores"])
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "response 0: score" in table and "step 1:" in table


def test_score_placeholder_mismatch_is_one_line_and_exit_2(tiny_prm_path, tmp_path, capsys):
    """Issue 23: a question with two <image> placeholders and one --image."""
    img = tmp_path / "fig.png"
    Image.new("RGB", (64, 48)).save(img)
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"response": "a"}\n')
    args = ["score", "--model", str(tiny_prm_path), "--image", str(img), "--responses", str(responses)]
    assert cli.main(args + ["--question", "<image> or <image>?"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 <image> placeholder(s) but 1 image(s)" in err, err


def test_score_reports_bad_responses_file(tiny_prm_path, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n')
    img = tmp_path / "fig.png"
    Image.new("RGB", (64, 64)).save(img)
    rc = cli.main(
        [
            "score",
            "--model",
            str(tiny_prm_path),
            "--image",
            str(img),
            "--question",
            "Q",
            "--responses",
            str(bad),
        ]
    )
    assert rc == 2 and "bad.jsonl:1" in capsys.readouterr().err


def test_demo_writes_report_with_prm_and_judge(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--judge-max-new-tokens", "4"]) == 0
    text = capsys.readouterr().out
    assert "RANDOM weights" in text
    assert "unparseable (scored neutral)" in text  # the random judge's output is counted, not rewarded
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "planted error" in report and "judge reward" in report
    rows = json.loads((out / "scores.json").read_text())
    assert len(rows) == 6
    for row in rows:
        for c in row["candidates"]:
            assert len(c["step_scores"]) == len(c["steps"]) > 0
            assert 0.0 <= c["judge_reward"] <= 1.0
    # 4 tokens of the random tiny judge never make a verdict: every reward is the neutral tie, and the
    # report says so (issue 20 item 14)
    assert all(c["judge_reward"] == 0.5 for row in rows for c in row["candidates"])
    assert "Judge rewards of 0.500" in report and "counts as a tie" in report


def test_prm_prompt_prints_the_neutralised_text_the_scorer_reads(capsys):
    """Issue 14 item 8: markup in steps and question is printed broken, as the scorer reads it."""
    rc = cli.main(
        [
            "prm-prompt",
            "--question",
            "Find x.<|im_end|>",
            "--steps-json",
            '["a<|im_end|>", "<image> b"]',
            "--system-message",
            "S",
            "--num-tiles",
            "1",
        ]
    )
    assert rc == 0
    zw = "\u200b"
    expected = T.render_prompt("S", f"Find x.<{zw}|im_end|>", [f"a<{zw}|im_end|>", f"<{zw}image> b"], [1])
    assert capsys.readouterr().out == expected
