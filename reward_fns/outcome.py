"""Math answer reward for stock OpenRLHF: ``--reward.remote_url reward_fns/outcome.py``.

1.0 when the response's final answer (``\\boxed{}``, "The answer is X", last number) equals the
label's ``"answer"`` by math-verify, else 0.0. Details: ``openrlhf_visualprm.workers.reward_func``.
"""

from openrlhf_visualprm.workers.reward_func import make_reward_func

reward_func = make_reward_func("outcome")
