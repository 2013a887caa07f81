#!/usr/bin/env bash
# GRPO with an MR. Judge-style listwise reward, for a Qwen2.5-VL-7B policy on geometry3k-style data.
#
# Each prompt's 8 responses are shuffled into sets of 4; the judge (a reasoning VLM, default
# Qwen2.5-VL-7B-Instruct under our MR. Judge template, `mr-judge`) reads image + question + the
# 4 candidates, reasons, and names the best; reward = wins / appearances over 4 reshuffled
# rounds (8 judge calls per group), in which every response holds every label (A-D) once, so a
# judge's position bias cancels (2 rounds would leave it: the launcher refuses them). Win rates
# have a constant group mean, so GRPO's normalisation is what turns them into a learning signal;
# OpenRLHF's dynamic filtering on the group mean would be meaningless here (the launcher notes it).
#
# Resource layout, one node with 8 x 80 GB GPUs (total 8):
#   GPUs 0-3  policy (ZeRO-3) + reference model, colocated
#   GPUs 4-5  2 vLLM rollout engines (TP 1)
#   GPUs 6-7  2 plugin reward actors, each with the 7B judge (bf16, HF generate, <= 1024 reasoning
#             tokens; the slowest reward: ~40 s per group of 8 on one H100, see benchmarks/judge_throughput.py)
# Data layout: as in grpo_visualprm_outcome.sh (the judge needs no answer key).
# Usage: examples/grpo_mr_judge_listwise.sh [--dry-run [--json]] [more flags]
set -euo pipefail
POLICY=${POLICY:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA=${DATA:-data/geo3k/train.jsonl}
IMAGE_ROOT=${IMAGE_ROOT:-data/geo3k}
JUDGE=${JUDGE:-mr-judge}
SAVE=${SAVE:-checkpoints/grpo-mr-judge}

exec "${PYTHON:-python}" -m openrlhf_visualprm.cli train \
  --actor.model_name_or_path "$POLICY" \
  --reward.model_name_or_path "$JUDGE" \
  --algo.advantage.estimator group_norm --rollout.n_samples_per_prompt 8 \
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key label --data.image_key images \
  --data.apply_chat_template --data.max_images_per_prompt 1 --actor.freeze_visual_encoder \
  --actor.num_nodes 1 --actor.num_gpus_per_node 4 \
  --ref.num_nodes 1 --ref.num_gpus_per_node 4 --train.colocate_actor_ref \
  --vllm.num_engines 2 --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.85 \
  --reward.num_nodes 1 --reward.num_gpus_per_node 2 \
  --rollout.batch_size 32 --rollout.micro_batch_size 4 \
  --train.batch_size 64 --train.micro_batch_size 2 \
  --data.max_len 4096 --rollout.max_new_tokens 1024 \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable --actor.adam.lr 1e-6 \
  --algo.kl.init_coef 0.001 --algo.kl.use_loss --algo.kl.estimator k3 \
  --ckpt.output_dir "$SAVE" --ckpt.save_steps 50 \
  --reward.judge.schedule listwise --reward.judge.group_size 4 --reward.judge.rounds 4 \
  --reward.judge.backend hf --reward.judge.max_new_tokens 1024 \
  --reward.image_roots "$IMAGE_ROOT" \
  "$@"
