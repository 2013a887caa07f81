"""The stand-in judge's verdict rule, shared by the vLLM stand-in (in the reward actor) and the
test's direct judge (a ``ScriptedBackend``): pick the candidate the demo set marks correct for
the image the judge was shown, else the last candidate. Content-aware on purpose: a judge that
never parses gives 0.5 to everyone, and a routing check on constant rewards cannot fail."""

from __future__ import annotations

import re

CANDIDATE = re.compile(r"\[Candidate ([A-Z])\]\n(.*?)\n\[End of Candidate \1\]", re.DOTALL)


def verdict(prompt_text: str, correct_responses: set[str]) -> str:
    found = CANDIDATE.findall(prompt_text)
    if not found:
        return "<think>no candidates found</think>"
    pick = next((label for label, text in found if text.strip() in correct_responses), found[-1][0])
    return f"<think>scripted by the e2e stand-in</think>\n<answer>{pick}</answer>"
