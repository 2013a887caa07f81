"""A generated mini multimodal-math set: images drawn with PIL, exact answers, candidate solutions.

Each item has an image (a rectangle, a bar chart or a triangle), a question with an exact
integer answer, and several step-by-step candidate responses (steps separated by a blank line,
VisualPRM's convention): some fully correct, some with one planted wrong step whose error
carries through to a wrong final answer. Deterministic for a given seed, so tests can rely on it.

Output layout (``make_demo_data(DIR)``)::

    DIR/images/<id>.png
    DIR/demo.jsonl      one item per line:
        {"id", "image": "images/<id>.png", "question", "answer", "kind",
         "candidates": [{"response", "steps", "correct", "wrong_step"}]}

``wrong_step`` is the index of the planted error (``None`` for a correct candidate);
``steps`` are the exact step strings, ``response == "\\n\\n".join(steps)``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEMO_FILE = "demo.jsonl"


@dataclass
class Candidate:
    steps: list[str]
    correct: bool
    wrong_step: int | None

    @property
    def response(self) -> str:
        return "\n\n".join(self.steps)


@dataclass
class DemoItem:
    id: str
    image: str
    question: str
    answer: str
    kind: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict:
        record = asdict(self)
        record["candidates"] = [{"response": c.response, **asdict(c)} for c in self.candidates]
        return record


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _rectangle(rng: random.Random, idx: int, out: Path) -> DemoItem:
    from PIL import Image, ImageDraw

    w, h = rng.randint(3, 12), rng.randint(2, 9)
    img = Image.new("RGB", (640, 448), "white")
    draw = ImageDraw.Draw(img)
    scale = 36
    x0, y0 = 80, 60
    draw.rectangle([x0, y0, x0 + w * scale, y0 + h * scale], outline="navy", width=4, fill=(220, 235, 255))
    draw.text((x0 + w * scale // 2 - 10, y0 + h * scale + 12), f"{w} cm", fill="black", font=_font())
    draw.text((x0 + w * scale + 12, y0 + h * scale // 2), f"{h} cm", fill="black", font=_font())
    name = f"rect-{idx:03d}"
    img.save(out / f"{name}.png")
    area, per = w * h, 2 * (w + h)
    question = (
        "The figure shows a rectangle with its side lengths marked. What is its area in square centimetres?"
    )
    good = [
        f"The rectangle's sides are {w} cm and {h} cm, as marked in the figure.",
        "The area of a rectangle is width times height.",
        f"So the area is {w} x {h} = {area}.",
        f"The answer is {area}.",
    ]
    wrong_area = area + rng.choice([-3, -2, 2, 3, w])
    bad_mult = [good[0], good[1], f"So the area is {w} x {h} = {wrong_area}.", f"The answer is {wrong_area}."]
    bad_formula = [
        good[0],
        "The area of a rectangle is twice the sum of its sides.",
        f"So the area is 2 x ({w} + {h}) = {per}.",
        f"The answer is {per}.",
    ]
    cands = [Candidate(good, True, None), Candidate(bad_mult, False, 2), Candidate(bad_formula, False, 1)]
    return DemoItem(name, f"images/{name}.png", question, str(area), "rectangle", cands)


def _bars(rng: random.Random, idx: int, out: Path) -> DemoItem:
    from PIL import Image, ImageDraw

    labels = ["A", "B", "C", "D"][: rng.randint(3, 4)]
    values = [rng.randint(1, 9) for _ in labels]
    img = Image.new("RGB", (560, 420), "white")
    draw = ImageDraw.Draw(img)
    base, unit = 360, 32
    draw.line([40, base, 520, base], fill="black", width=2)
    for i, (lab, val) in enumerate(zip(labels, values)):
        x = 70 + i * 110
        draw.rectangle([x, base - val * unit, x + 60, base], fill=(70 + 40 * i, 120, 200 - 30 * i))
        draw.text((x + 25, base + 8), lab, fill="black", font=_font())
        draw.text((x + 25, base - val * unit - 16), str(val), fill="black", font=_font())
    name = f"bars-{idx:03d}"
    img.save(out / f"{name}.png")
    total = sum(values)
    question = "The bar chart shows a value above each bar. What is the sum of all the values?"
    listing = ", ".join(f"{lab} = {val}" for lab, val in zip(labels, values))
    good = [
        f"Reading the chart: {listing}.",
        f"Adding them: {' + '.join(map(str, values))} = {total}.",
        f"The answer is {total}.",
    ]
    misread = list(values)
    misread[0] = values[0] + 1 if values[0] < 9 else values[0] - 1
    bad_listing = ", ".join(f"{lab} = {val}" for lab, val in zip(labels, misread))
    bad_read = [
        f"Reading the chart: {bad_listing}.",
        f"Adding them: {' + '.join(map(str, misread))} = {sum(misread)}.",
        f"The answer is {sum(misread)}.",
    ]
    bad_add = [
        good[0],
        f"Adding them: {' + '.join(map(str, values))} = {total + 2}.",
        f"The answer is {total + 2}.",
    ]
    cands = [Candidate(good, True, None), Candidate(bad_read, False, 0), Candidate(bad_add, False, 1)]
    return DemoItem(name, f"images/{name}.png", question, str(total), "bar_chart", cands)


def _triangle(rng: random.Random, idx: int, out: Path) -> DemoItem:
    from PIL import Image, ImageDraw

    a = rng.randint(30, 80)
    b = rng.randint(30, 150 - a)
    c = 180 - a - b
    img = Image.new("RGB", (600, 420), "white")
    draw = ImageDraw.Draw(img)
    pts = [(80, 360), (520, 360), (80 + rng.randint(120, 320), 80)]
    draw.polygon(pts, outline="darkgreen", fill=(230, 250, 230))
    draw.line(pts + [pts[0]], fill="darkgreen", width=3)
    draw.text((pts[0][0] + 20, pts[0][1] - 24), f"{a}°", fill="black", font=_font())
    draw.text((pts[1][0] - 50, pts[1][1] - 24), f"{b}°", fill="black", font=_font())
    draw.text((pts[2][0] - 6, pts[2][1] + 20), "x", fill="red", font=_font())
    name = f"angle-{idx:03d}"
    img.save(out / f"{name}.png")
    question = "Two angles of the triangle are marked. Find the angle x in degrees."
    good = [
        f"The two marked angles are {a}° and {b}°.",
        "The angles of a triangle add up to 180°.",
        f"So x = 180 - {a} - {b} = {c}.",
        f"The answer is {c}.",
    ]
    bad_sum = [
        good[0],
        "The angles of a triangle add up to 360°.",
        f"So x = 360 - {a} - {b} = {360 - a - b}.",
        f"The answer is {360 - a - b}.",
    ]
    bad_arith = [good[0], good[1], f"So x = 180 - {a} - {b} = {c + 10}.", f"The answer is {c + 10}."]
    also_good = [
        f"Angles {a}° and {b}° together make {a + b}°.",
        f"The third angle is what is left of 180°: 180 - {a + b} = {c}.",
        f"The answer is {c}.",
    ]
    cands = [
        Candidate(good, True, None),
        Candidate(bad_sum, False, 1),
        Candidate(bad_arith, False, 2),
        Candidate(also_good, True, None),
    ]
    return DemoItem(name, f"images/{name}.png", question, str(c), "angle", cands)


BUILDERS = (_rectangle, _bars, _triangle)


def make_demo_data(out_dir: str | os.PathLike, n_items: int = 6, seed: int = 0) -> Path:
    """Write ``n_items`` items (cycling rectangle, bar chart, triangle) and return the jsonl path."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    items = [BUILDERS[i % len(BUILDERS)](rng, i, images) for i in range(n_items)]
    for item in items:
        rng.shuffle(item.candidates)
    path = out / DEMO_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def load_demo_data(path: str | os.PathLike) -> list[dict]:
    """Read ``demo.jsonl`` (or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / DEMO_FILE
    with p.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write images/ and demo.jsonl into")
    parser.add_argument("--items", type=int, default=6, help="number of questions (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    path = make_demo_data(args.out_dir, n_items=args.items, seed=args.seed)
    items = load_demo_data(path)
    n_cands = sum(len(i["candidates"]) for i in items)
    n_good = sum(c["correct"] for i in items for c in i["candidates"])
    print(f"wrote {len(items)} questions, {n_cands} candidates ({n_good} correct) to {path}")
    return 0
