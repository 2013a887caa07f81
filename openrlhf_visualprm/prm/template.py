"""VisualPRM's prompt: the ``internvl2_5`` (ChatML) conversation with one ``+`` turn per step.

Layout, exactly (spec ``visualprm.md``)::

    <|im_start|>system\\n{system_message}<|im_end|>\\n
    <|im_start|>user\\n### Question:\\n{question}\\n\\n### Solution Process:\\n{step_0}<|im_end|>\\n
    <|im_start|>assistant\\n+<|im_end|>\\n
    <|im_start|>user\\n{step_1}<|im_end|>\\n
    <|im_start|>assistant\\n+<|im_end|>\\n
    ...

``question`` carries ``<image>`` placeholders (``<image>\\n`` is prepended when it has none; with
several images ``Image-1: <image>\\nImage-2: <image>\\n``, InternVL's multi-image convention), each
expanded to ``<img>`` + ``<IMG_CONTEXT>`` x (256 x tiles) + ``</img>``. A step's score is read at
the token that *predicts* its ``+`` placeholder (the ``\\n`` ending ``<|im_start|>assistant\\n``).

The prompt splits into a *prefix* (system + question, identical for every response to the same
image + question) and a *suffix* (the steps); the shared-prefix scorer runs the prefix once.

Policy text is untrusted: special-token strings inside steps (chat control tokens, image tokens)
are neutralised with a zero-width space after their first character, so a response can neither
open a fake ``+`` turn nor smuggle ``<IMG_CONTEXT>`` tokens that would break the image features.
Scored text then differs from the raw response only inside such strings; spans still refer to the
raw response.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

IMAGE_PLACEHOLDER = "<image>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
TOKENS_PER_TILE = 256
PLUS = "+"
MINUS = "-"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ASSISTANT_TURN = f"{IM_START}assistant\n{PLUS}{IM_END}\n"

# Default system message of InternVL2.5 (the ``internvl2_5`` template). Used only when neither the
# checkpoint config nor the caller provides one, and the scorer says so when it happens.
INTERNVL2_5_SYSTEM_MESSAGE = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"

ZERO_WIDTH_SPACE = "\u200b"
_DEFAULT_SPECIALS = (
    IM_START,
    IM_END,
    "<|endoftext|>",
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    IMAGE_PLACEHOLDER,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_pad|>",
)


def neutralize(text: str, specials: Iterable[str] = _DEFAULT_SPECIALS) -> str:
    """Break every occurrence of a special-token string so the tokenizer reads it as plain text."""
    ordered = sorted({s for s in specials if len(s) > 1}, key=len, reverse=True)
    if not ordered:
        return text
    pattern = re.compile("|".join(re.escape(s) for s in ordered))
    return pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)


def format_question(question: str, num_images: int) -> str:
    """Ensure the question holds exactly ``num_images`` ``<image>`` placeholders."""
    found = question.count(IMAGE_PLACEHOLDER)
    if found == 0 and num_images == 1:
        return f"{IMAGE_PLACEHOLDER}\n{question}"
    if found == 0 and num_images > 1:
        head = "".join(f"Image-{i + 1}: {IMAGE_PLACEHOLDER}\n" for i in range(num_images))
        return head + question
    if found != num_images:
        raise ValueError(
            f"the question has {found} {IMAGE_PLACEHOLDER} placeholder(s) but {num_images} image(s) were given; "
            "give one image per placeholder, or none and let the scorer prepend them"
        )
    return question


def expand_images(text: str, tiles_per_image: Sequence[int]) -> str:
    """Replace each ``<image>`` with ``<img>`` + ``<IMG_CONTEXT>`` x 256·tiles + ``</img>``."""
    parts = text.split(IMAGE_PLACEHOLDER)
    if len(parts) - 1 != len(tiles_per_image):
        raise ValueError(f"{len(parts) - 1} placeholders for {len(tiles_per_image)} images")
    out = [parts[0]]
    for tiles, rest in zip(tiles_per_image, parts[1:]):
        out.append(IMG_START + IMG_CONTEXT * (TOKENS_PER_TILE * tiles) + IMG_END + rest)
    return "".join(out)


def render_prefix(system_message: str, question: str) -> str:
    """System turn + the user turn up to where the first step begins."""
    return (
        f"{IM_START}system\n{system_message}{IM_END}\n"
        f"{IM_START}user\n### Question:\n{question}\n\n### Solution Process:\n"
    )


def render_suffix(steps: Sequence[str]) -> str:
    """The steps, each closed by its ``+`` assistant turn (step 0 continues the question's turn)."""
    out = []
    for k, step in enumerate(steps):
        head = "" if k == 0 else f"{IM_START}user\n"
        out.append(f"{head}{step}{IM_END}\n{ASSISTANT_TURN}")
    return "".join(out)


def placeholder_offsets(prefix_len: int, steps: Sequence[str]) -> list[int]:
    """Character offsets (in prefix + suffix) of each step's ``+`` placeholder."""
    offsets, pos = [], prefix_len
    for k, step in enumerate(steps):
        pos += (
            (0 if k == 0 else len(f"{IM_START}user\n")) + len(step) + len(f"{IM_END}\n{IM_START}assistant\n")
        )
        offsets.append(pos)
        pos += len(f"{PLUS}{IM_END}\n")
    return offsets


def render_prompt(
    system_message: str, question: str, steps: Sequence[str], tiles_per_image: Sequence[int]
) -> str:
    """The full text the PRM sees for one response (images expanded, steps as given)."""
    q = expand_images(format_question(question, len(tiles_per_image)), tiles_per_image)
    return render_prefix(system_message, q) + render_suffix(steps)
