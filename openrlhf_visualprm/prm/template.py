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

Two things around the text are per checkpoint and live here too:

- **System message** (:func:`resolve_system_message`): a named choice (:data:`SYSTEM_MESSAGE_CHOICES`)
  or literal text. The released inference code uses the checkpoint config's ``system_message``,
  else InternVL2.5's default; VisualPRM-8B-v1.1's training data (VisualPRM400K-v1.1) carried the
  data pipeline's PRM system prompt instead (:data:`PRM_SYSTEM_PROMPT`). Which one is in use is
  always reported with where it came from.
- **BOS rule** (:func:`special_prefix_ids`): the prompt is tokenised the way the reference does,
  with the tokenizer's own special-token rule: InternLM2 (VisualPRM-8B v1) prepends ``<s>``,
  Qwen2 (v1.1) adds nothing. Specials a tokenizer would append after the text are not added:
  they come after every scored position, so no score can depend on them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openrlhf_visualprm.errors import PART_QUESTION, ConfigError, InputError, ModelError

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

# The process-supervision system prompt of the VisualPRM data pipeline, verbatim:
# OpenGVLab/InternVL internvl_chat/tools/reasoning_data_pipeline/utils/constants.py
# (PRM_SYSTEM_PROMPT, commit 19b0da2), written as the system turn of every VisualPRM400K
# conversation by visualprm_data_pipeline_postprocess.py (item2conv_prm).
PRM_SYSTEM_PROMPT = """You are an advanced AI assistant, designed to serve as a process supervision model. \
In this task, I will provide a problem statement followed by the first step of the solution process. \
For each subsequent turn, I will give you a new step in the solution. \
Your role is to assess whether the solution process is correct up to the current step.

- In the **first round**, I will input the problem and the first step of the solution process.
- In **each subsequent round**, I will provide the next step in the solution.

For each step, you should:

- Respond with **"+"** if you believe the solution process is correct up to this step.
- Respond with **"-"** if you detect any issues or errors in the process up to this step.

Please note:
- Only respond with **"+"** or **"-"**. Do not provide any additional explanations, comments, or justifications.

Your task is to verify the accuracy and correctness of each step in the given solution process."""

# Named system messages (``--system-message NAME``); any other value is used as the text itself.
SYSTEM_MESSAGE_CHOICES: dict[str, str] = {
    "prm": "the VisualPRM data pipeline's PRM_SYSTEM_PROMPT (VisualPRM400K-v1.1 training data)",
    "internvl2_5": "InternVL2.5's default system message (the internvl2_5 template)",
    "config": "the checkpoint config's system_message (what the released inference code uses)",
}

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


# InputError.reason of a question whose <image> placeholders do not match its images.
REASON_IMAGE_PLACEHOLDERS = "image_placeholders"


def format_question(question: str, num_images: int) -> str:
    """Ensure the question holds exactly ``num_images`` ``<image>`` placeholders.

    A mismatch is a bad *sample* (a label's question written for another number of images), so it
    raises :class:`~openrlhf_visualprm.errors.InputError` (part ``question``): a neutral reward,
    counted, on the training routes; a 4xx on the service; one line and exit 2 on the CLI.
    """
    found = question.count(IMAGE_PLACEHOLDER)
    if found == 0 and num_images == 1:
        return f"{IMAGE_PLACEHOLDER}\n{question}"
    if found == 0 and num_images > 1:
        head = "".join(f"Image-{i + 1}: {IMAGE_PLACEHOLDER}\n" for i in range(num_images))
        return head + question
    if found != num_images:
        raise InputError(
            f"the question has {found} {IMAGE_PLACEHOLDER} placeholder(s) but {num_images} image(s) were given; "
            "give one image per placeholder, or none and let the scorer prepend them",
            PART_QUESTION,
            REASON_IMAGE_PLACEHOLDERS,
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


# --------------------------------------------------------------------------- system message


@dataclass(frozen=True)
class SystemMessage:
    """The system message in use: its ``text``, the ``choice`` that selected it (a name of
    :data:`SYSTEM_MESSAGE_CHOICES` or ``"text"``) and ``source``, a phrase for logs and reports."""

    text: str
    choice: str
    source: str

    def fingerprint(self) -> str:
        """``choice:sha256[:12]`` of the text: two runs with different texts never look alike."""
        import hashlib

        return f"{self.choice}:{hashlib.sha256(self.text.encode()).hexdigest()[:12]}"

    def describe(self, model_id: str = "VisualPRM") -> str:
        preview = self.text.replace("\n", " ")
        preview = preview if len(preview) <= 60 else preview[:57] + "..."
        return f"{model_id}: system message '{self.choice}' ({self.source}): {preview!r}"


def resolve_system_message(choice: str | None, config_value: str | None, model_id: str = "") -> SystemMessage:
    """The system message for ``choice``: ``prm`` | ``internvl2_5`` | ``config`` | literal text.

    ``None`` behaves like the released inference code: the checkpoint's ``config_value`` when it
    has one, else InternVL2.5's default. ``config`` on a checkpoint without one is an error (say
    which to use instead), never a silent fallback.
    """
    if choice is None:
        if config_value:
            return SystemMessage(config_value, "config", "from the checkpoint config (default)")
        return SystemMessage(
            INTERNVL2_5_SYSTEM_MESSAGE,
            "internvl2_5",
            "default: the checkpoint config has no system_message",
        )
    if choice == "prm":
        return SystemMessage(PRM_SYSTEM_PROMPT, "prm", SYSTEM_MESSAGE_CHOICES["prm"])
    if choice == "internvl2_5":
        return SystemMessage(INTERNVL2_5_SYSTEM_MESSAGE, "internvl2_5", SYSTEM_MESSAGE_CHOICES["internvl2_5"])
    if choice == "config":
        if not config_value:
            raise ConfigError(
                f"--system-message config: {model_id or 'the checkpoint'} has no system_message in its "
                "config; choose prm, internvl2_5 or give the text"
            )
        return SystemMessage(config_value, "config", SYSTEM_MESSAGE_CHOICES["config"])
    if not choice.strip():
        raise ConfigError("--system-message is empty; choose prm, internvl2_5, config or give the text")
    return SystemMessage(choice, "text", "text given by the caller")


# --------------------------------------------------------------------------- BOS rule


def special_prefix_ids(tokenizer) -> list[int]:
    """The special tokens the tokenizer puts before any text (InternLM2: ``[<s>]``; Qwen2: ``[]``).

    Read from the tokenizer itself (its own ``add_special_tokens`` behaviour on a probe text),
    so a checkpoint shipping a differently configured tokenizer is followed, not guessed.
    """
    probe = "Find x."
    with_specials = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start : start + len(plain)] == plain:
            return with_specials[:start]
    raise ModelError(
        f"cannot tell which special tokens the tokenizer adds: {probe!r} encodes to {plain} "
        f"without specials but {with_specials} with them"
    )


def describe_bos_rule(tokenizer) -> str:
    ids = special_prefix_ids(tokenizer)
    if not ids:
        return "no BOS: the prompt starts with its first text token"
    names = tokenizer.convert_ids_to_tokens(ids)
    return f"prepends {names} (ids {ids}) to every prompt"
