"""Write small files in the released formats, with PNG images, to try the tools without downloads.

Field names are exactly those of the releases, including what shows up in the wild: multi-image
rows, neutral steps (``process_correctness`` 0), unestimated steps (``num_mc_total == 0``),
parquet rows carrying image bytes. Tests build on these files; ``openrlhf-visualprm
make-sample-data DIR`` writes them for a person to look at.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from openrlhf_visualprm.data.records import write_jsonl, write_parquet


def make_png(
    path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), text: str = ""
) -> Path:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([6, 6, size[0] - 6, size[1] - 6], outline=colour, width=3)
    if text:
        draw.text((10, size[1] // 2 - 5), text, fill=colour)
    img.save(path)
    return path


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="PNG")
    return buf.getvalue()


def visualprm400k_v1_rows() -> list[dict]:
    # The first human turn as the public pipeline writes it (item2conv_prm): the image tag opens
    # the question, inside the "### Question:" header.
    q = "### Question:\n<image>\nWhat is 3 + 4?\n\n### Solution Process:\n"
    return [
        {
            "id": "geo_0",
            "image": "images/a.png",
            "conversations": [
                {"from": "system", "value": "You are a process supervision model."},
                {"from": "human", "value": q + "Read the numbers 3 and 4."},
                {"from": "gpt", "value": "+"},
                {"from": "human", "value": "Add them: 3 + 4 = 7."},
                {"from": "gpt", "value": "+"},
                {"from": "human", "value": "The answer is 7."},
                {"from": "gpt", "value": "+"},
            ],
        },
        {
            "id": "multi_1",
            "image": ["images/a.png", "images/b.png"],
            "conversations": [
                {
                    "from": "human",
                    "value": "### Question:\nImage-1: <image>\nImage-2: <image>\nWhich is larger?"
                    "\n\n### Solution Process:\nThe first box is 5, the second 2.",
                },
                {"from": "gpt", "value": "+"},
                {"from": "human", "value": "So the second is larger.\n\nThe answer is B."},
                {"from": "gpt", "value": "-"},
            ],
        },
    ]


def visualprm400k_v11_rows() -> list[dict]:
    def s(step: str, c: int, t: int) -> dict:
        return {"step": step, "score": c / t if t else 0.0, "num_mc_correct": c, "num_mc_total": t}

    return [
        {
            "image": "images/a.png",
            "question": "What is 3 + 4?",
            "answer": "7",
            "response": "Read 3 and 4.\n\nAdd: 7.\n\nThe answer is 7.",
            "steps_with_score": [
                s("Read 3 and 4.", 12, 16),
                s("Add: 7.", 16, 16),
                s("The answer is 7.", 16, 16),
            ],
            "num_mc_sequences": 16,
        },
        # early-stopped pipeline: after the failing step nothing was estimated (num_mc_total == 0)
        {
            "image": "images/b.png",
            "question": "What is 6 x 2?",
            "answer": "12",
            "response": "Read 6 and 2.\n\n6 x 2 = 14.\n\nThe answer is 14.",
            "steps_with_score": [
                s("Read 6 and 2.", 3, 16),
                s("6 x 2 = 14.", 0, 16),
                s("The answer is 14.", 0, 0),
            ],
            "num_mc_sequences": 16,
        },
        {
            "image": ["images/a.png", "images/b.png"],
            "question": "Sum of the two boxes?",
            "answer": "7",
            "response": "5 and 2.\n\n5 + 2 = 7.",
            "steps_with_score": [s("5 and 2.", 1, 16), s("5 + 2 = 7.", 8, 16)],
            "num_mc_sequences": 16,
        },
    ]


def processbench_rows() -> list[dict]:
    return [
        {
            "image": ["images/a.png"],
            "question": "What is 3 + 4?",
            "answer": "7",
            "response": {
                "steps": ["Read 3 and 4.", "3 + 4 = 8.", "The answer is 8."],
                "process_correctness": [1, -1, -1],
            },
            "policy_model": "InternVL2.5-8B",
            "data_source": "MathVerse_MINI_Vision_Only",
        },
        {
            "image": ["images/a.png", "images/b.png"],
            "question": "Compare the boxes.",
            "answer": "A",
            # a gold step with an internal blank line: must be scored as one step, never re-split
            "response": {
                "steps": ["Box A holds 5.\n\nBox B holds 2.", "Neutral remark.", "So A is larger."],
                "process_correctness": [1, 0, 1],
            },
            "policy_model": "GPT-4o",
            "data_source": "MathVision_MINI",
        },
        {
            "image": ["images/b.png"],
            "question": "What is 6 x 2?",
            "answer": "12",
            "response": {"steps": ["6 x 2 = 12.", "The answer is 12."], "process_correctness": [1, 1]},
            "policy_model": "InternVL2.5-8B",
            "data_source": "DynaMath",
        },
    ]


def vlrewardbench_rows() -> list[dict]:
    return [
        {
            "id": "wildvision-battle-1",
            "query": "Describe the image.",
            "response": ["A red box.", "A blue cat."],
            "image": "images/a.png",
            "human_ranking": [0, 1],
            "models": ["m1", "m2"],
            "judge": "human",
            "rationale": "The box is red.",
            "query_source": "wildvision",
            "meta": {},
        },
        {
            "id": "RLAIF-V-2",
            "query": "What colour is the frame?",
            "response": ["Green.", "Red."],
            "image": "images/a.png",
            "human_ranking": [1, 0],
            "models": ["m1", "m2"],
            "judge": "gpt-4o",
            "rationale": "",
            "query_source": "rlaif-v",
            "meta": {},
        },
        {
            "id": "mathverse_3",
            "query": "Find x.",
            "response": ["x = 3", "x = 4"],
            "image": "images/b.png",
            "human_ranking": [0, 1],
            "models": ["m1", "m2"],
            "judge": "gpt-4o",
            "rationale": "",
            "query_source": "mathverse",
            "meta": {},
        },
    ]


def math_rows(kind: str) -> list[dict]:
    """Two records of one math benchmark, field names as released."""
    if kind == "geometry3k":
        return [
            {
                "images": ["images/a.png"],
                "problem": "<image>Find x. The segments are 3 and 4.",
                "answer": "7",
            },
            {"images": ["images/b.png"], "problem": "<image>Find the area.", "answer": "12"},
        ]
    if kind == "mathvista":
        return [
            {
                "pid": "1",
                "question": "How many boxes?",
                "image": "images/a.png",
                "choices": None,
                "unit": None,
                "precision": None,
                "answer": "1",
                "question_type": "free_form",
                "answer_type": "integer",
                "metadata": {"source": "synthetic"},
                "query": "Hint: answer with an integer.\nQuestion: How many boxes?",
            },
            {
                "pid": "2",
                "question": "Which colour?",
                "image": "images/b.png",
                "choices": ["red", "blue"],
                "unit": None,
                "precision": None,
                "answer": "red",
                "question_type": "multi_choice",
                "answer_type": "text",
                "metadata": {},
                "query": "",
            },
        ]
    if kind == "mathverse":
        return [
            {
                "sample_index": "1",
                "problem_index": "1",
                "problem_version": "Vision Only",
                "question": "",
                "image": "images/a.png",
                "answer": "B",
                "question_type": "multi-choice",
                "metadata": {},
                "query_wo": "Answer the question in the image.",
                "query_cot": "Answer the question in the image. Think step by step.",
                "question_for_eval": "",
            }
        ]
    if kind == "mathvision":
        return [
            {
                "id": "7",
                "question": "<image1>\nWhich box is red?",
                "options": ["left", "right"],
                "image": "images/a.png",
                "answer": "A",
                "solution": None,
                "level": 2,
                "subject": "logic",
            }
        ]
    if kind == "wemath":
        return [
            {
                "ID": "3steps_1",
                "split": "testmini",
                "knowledge concept": "Area",
                "question": "Area of the box?",
                "option": "A. 6; B. 12",
                "answer": "B",
                "image_path": "images/b.png",
                "key": "3steps_1",
                "question number": 1,
                "knowledge concept description": "",
            }
        ]
    if kind == "dynamath":
        return [
            {
                "id": "dm-0",
                "question": "What is 6 x 2?",
                "image": "images/b.png",
                "decoded_image": None,
                "ground_truth": "12",
                "answer_type": "float",
                "subject": "arithmetic",
                "knowledge_level": "elementary",
            }
        ]
    raise ValueError(f"no sample rows for {kind!r}")


def write_samples(out_dir: str | Path) -> dict[str, Path]:
    """Write every sample file under ``out_dir``; return name -> path."""
    out = Path(out_dir)
    make_png(out / "images" / "a.png", (200, 30, 30), text="5")
    make_png(out / "images" / "b.png", (30, 30, 200), text="2")
    files = {
        "visualprm400k_v1": write_jsonl(out / "visualprm400k_v1_prm.jsonl", visualprm400k_v1_rows()),
        "visualprm400k_v11_raw": write_jsonl(out / "visualprm400k_v11_raw.jsonl", visualprm400k_v11_rows()),
        "visualprocessbench": write_jsonl(out / "visualprocessbench.jsonl", processbench_rows()),
        "vlrewardbench": write_jsonl(out / "vlrewardbench.jsonl", vlrewardbench_rows()),
    }
    for kind in ("geometry3k", "mathvista", "mathverse", "mathvision", "wemath", "dynamath"):
        files[kind] = write_jsonl(out / f"{kind}.jsonl", math_rows(kind))
    # parquet export with embedded image bytes (as HF parquet files store the Image feature)
    files["mathvista_parquet"] = write_parquet(
        out / "mathvista.parquet",
        [
            {
                "pid": "p1",
                "question": "Count the boxes.",
                "image": "images/p1.png",
                "decoded_image": {"bytes": png_bytes((10, 160, 10)), "path": "p1.png"},
                "choices": None,
                "answer": "1",
                "question_type": "free_form",
                "answer_type": "integer",
                "query": "Count the boxes.",
            }
        ],
    )
    return files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write the sample files and images/ into")


def run(args: argparse.Namespace) -> int:
    files = write_samples(args.out_dir)
    print(json.dumps({k: str(v) for k, v in files.items()}, indent=2))
    return 0
