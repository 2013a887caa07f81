"""E2E stand-in for OpenRLHF's DeepSpeed policy actor (``PolicyModelActor``).

The real one needs CUDA and NCCL (``torch.cuda.current_device()`` in the actor and the replay
buffer, weight sync through ``vllm.distributed``). This one keeps its Ray contract (the methods
``train()``, ``PPOTrainer`` and ``PPOTrainerAsync`` call), returns zero log-probs, and records the
experiences it is sent, after OpenRLHF's advantage code, to ``$E2E_CASE_DIR/experiences.pkl``.
``fit`` reports the per-sample ``info`` means the way ``PolicyModelActor.fit`` does, so the
logged metrics (TensorBoard) come from the same numbers.
"""

from __future__ import annotations

import os
import pickle

import ray
import torch
from openrlhf.trainer.ray.launcher import BaseModelActor


class RecordingPolicy(BaseModelActor):
    def init_model_from_pretrained(self, strategy, pretrain, max_steps=None, vllm_engines=None):
        self.strategy = strategy
        self.experiences: list = []
        self.forward_calls: list[dict] = []
        self.fits = 0
        return "recording-policy-ready"

    def forward(
        self,
        sequences,
        action_mask=None,
        attention_mask=None,
        return_output=False,
        packed_seq_lens=None,
        mm_train_inputs_list=None,
    ):
        keys = sorted({k for inputs in (mm_train_inputs_list or []) if inputs for k in inputs})
        self.forward_calls.append({"batch": int(sequences.shape[0]), "mm_keys": keys})
        return torch.zeros(action_mask.shape, dtype=torch.float32)

    def append(self, experience) -> None:
        self.experiences.append(experience)

    def fit(self, kl_ctl: float = 0) -> dict:
        sums: dict[str, float] = {}
        count = 0
        for exp in self.experiences:
            batch = exp.action_mask.shape[0]
            count += batch
            for key, value in exp.info.items():  # per-sample values, as PolicyModelActor weighs them
                if isinstance(value, list):
                    value = torch.tensor(value, dtype=torch.float)
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.numel() == batch:
                    sums[key] = sums.get(key, 0.0) + float(value.float().sum())
        status = {key: total / max(count, 1) for key, total in sums.items()}
        status["policy_loss"] = 0.0
        case_dir = os.environ.get("E2E_CASE_DIR")
        if case_dir:
            self.fits += 1
            record = {"experiences": [vars(e) for e in self.experiences], "forward_calls": self.forward_calls}
            with open(os.path.join(case_dir, f"experiences-{self.fits}.pkl"), "wb") as f:
                pickle.dump(record, f)
        self.experiences, self.forward_calls = [], []
        return status

    def broadcast_to_vllm(self) -> None:
        return None

    def save_model(self) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def reload_states(self) -> None:
        return None

    def offload_states(self) -> None:
        return None

    def get_checkpoint_states(self) -> dict:
        return {"episode": 0, "global_step": 0, "total_consumed_prompts": 0, "data_loader_state_dict": {}}

    def save_checkpoint(self, *args, **kwargs) -> None:
        return None


RecordingPolicyActor = ray.remote(num_gpus=1)(RecordingPolicy)
