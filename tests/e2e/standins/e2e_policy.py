"""E2E stand-in for OpenRLHF's DeepSpeed policy actor (``PolicyModelActor``).

The real one needs CUDA and NCCL (``torch.cuda.current_device()`` in the actor and the replay
buffer, weight sync through ``vllm.distributed``). This one keeps its Ray contract (the methods
``train()``, ``PPOTrainer`` and ``PPOTrainerAsync`` call), returns zero log-probs, and records the
experiences it is sent, after OpenRLHF's advantage code, to ``$E2E_CASE_DIR/experiences-N.pkl``.

It replaces computation only, never bookkeeping: ``append`` is OpenRLHF's own
``NaiveReplayBuffer.append`` (``split_experience_batch``, padding removal: where a per-sample
``info`` entry of the wrong length fails a real run), and ``fit`` reads the buffer through
OpenRLHF's ``DataLoader`` + ``collate_fn`` (``make_experience_batch``) in micro-batches of
``--train.micro_batch_size``, reducing each micro-batch's ``info`` the way
``ActorPPOTrainer.training_step`` / ``ppo_train`` do (per-sample values weighted by samples, 0-dim
ones by action tokens), so the logged metrics (TensorBoard) come from the same numbers. Dynamic
batching (which needs a torch.distributed mesh) is refused.
"""

from __future__ import annotations

import os
import pickle
from unittest import mock

import ray
import torch
from openrlhf.trainer.ppo_utils.replay_buffer import NaiveReplayBuffer
from openrlhf.trainer.ray.launcher import BaseModelActor
from torch.utils.data import DataLoader


def _cpu_replay_buffer(args) -> NaiveReplayBuffer:
    """OpenRLHF's replay buffer as ``ActorPPOTrainer`` builds it (``buffer_limit`` 0, CPU
    offload); its constructor only asks CUDA for the device ``sample()`` moves to, unused here."""
    if args.train.dynamic_batch_enable:
        raise NotImplementedError("the e2e policy stand-in does not run dynamic batching")
    with mock.patch.object(torch.cuda, "current_device", lambda: 0):
        buffer = NaiveReplayBuffer(args.train.micro_batch_size, 0, True, args.ds.packing_samples, False)
    buffer.target_device = torch.device("cpu")
    return buffer


def _micro_batch_status(experience) -> tuple[dict, dict, float, float]:
    """``training_step``'s ``info`` part: per-sample tensors and lists weigh by sample, 0-dim
    tensors by action token."""
    metrics, weights = {}, {}
    for key, value in experience.info.items():
        if isinstance(value, torch.Tensor):
            metrics[key], weights[key] = value, ("token" if value.dim() == 0 else "sample")
        elif isinstance(value, list):
            metrics[key], weights[key] = torch.tensor(value, dtype=torch.float), "sample"
    return metrics, weights, float(experience.action_mask.shape[0]), float(experience.action_mask.sum())


class RecordingPolicy(BaseModelActor):
    def init_model_from_pretrained(self, strategy, pretrain, max_steps=None, vllm_engines=None):
        self.strategy = strategy
        self.replay_buffer = _cpu_replay_buffer(strategy.args)
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
        self.experiences.append(dict(vars(experience)))  # before the split clears its index
        self.replay_buffer.append(experience)

    def fit(self, kl_ctl: float = 0) -> dict:
        buffer = self.replay_buffer
        loader = DataLoader(
            buffer,
            batch_size=buffer.sample_batch_size,
            shuffle=False,
            drop_last=True,
            collate_fn=buffer.collate_fn,
        )
        totals: dict[str, float] = {}
        weights: dict[str, str] = {}
        n_samples = n_tokens = 0.0
        for experience in loader:
            metrics, kinds, samples, tokens = _micro_batch_status(experience)
            for key, value in metrics.items():
                scale = tokens if kinds[key] == "token" else samples
                totals[key] = totals.get(key, 0.0) + float(value.float().mean()) * scale
            weights.update(kinds)
            n_samples, n_tokens = n_samples + samples, n_tokens + tokens
        status = {k: v / (n_tokens if weights[k] == "token" else n_samples) for k, v in totals.items()}
        status["policy_loss"] = 0.0
        case_dir = os.environ.get("E2E_CASE_DIR")
        if case_dir:
            self.fits += 1
            record = {"experiences": self.experiences, "forward_calls": self.forward_calls}
            with open(os.path.join(case_dir, f"experiences-{self.fits}.pkl"), "wb") as f:
                pickle.dump(record, f)
        self.experiences, self.forward_calls = [], []
        buffer.clear()
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
