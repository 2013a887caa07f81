"""VisualPRM reward for stock OpenRLHF: ``--reward.remote_url reward_fns/visualprm.py``.

One response per call (OpenRLHF's contract), image from the label, scored by a running reward
pool (``OPENRLHF_VISUALPRM_POOL``) or a PRM loaded here (``OPENRLHF_VISUALPRM_PRM_MODEL``).
Details, label format and environment variables: ``openrlhf_visualprm.workers.reward_func``.
"""

from openrlhf_visualprm.workers.reward_func import make_reward_func

reward_func = make_reward_func("prm")
