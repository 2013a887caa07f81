"""MR. Judge reward for stock OpenRLHF: ``--reward.remote_url reward_fns/mr_judge.py``.

OpenRLHF passes one response per call, so the judge compares it with the label's ``"reference"``
answer (both orders); group-wise judging needs the plugin launcher (``openrlhf-visualprm train``).
Details and environment variables: ``openrlhf_visualprm.workers.reward_func``.
"""

from openrlhf_visualprm.workers.reward_func import make_reward_func

reward_func = make_reward_func("judge")
