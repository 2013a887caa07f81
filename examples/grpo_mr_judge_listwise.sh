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
#             tokens; the slowest reward: ~40 s per group of 8 on one H100, see DESIGN.md)
# Data layout: as in grpo_visualprm_outcome.sh (the judge needs no answer key).
# Usage: examples/grpo_mr_judge_listwise.sh [--dry-run [--json]] [more flags]
set -euo pipefail
POLICY=${POLICY:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA=${DATA:-data/geo3k/train.jsonl}
IMAGE_ROOT=${IMAGE_ROOT:-data/geo3k}
JUDGE=${JUDGE:-mr-judge}
SAVE=${SAVE:-checkpoints/grpo-mr-judge}

exec "${PYTHON:-python}" -m openrlhf_visualprm.cli train \
  --pretrain "$POLICY" \
  --reward_pretrain "$JUDGE" \
  --advantage_estimator group_norm --n_samples_per_prompt 8 \
  --prompt_data "$DATA" --input_key prompt --label_key label --image_key images \
  --apply_chat_template --max_images_per_prompt 1 --freeze_visual_encoder \
  --actor_num_nodes 1 --actor_num_gpus_per_node 4 \
  --ref_num_nodes 1 --ref_num_gpus_per_node 4 --colocate_actor_ref \
  --vllm_num_engines 2 --vllm_tensor_parallel_size 1 --vllm_gpu_memory_utilization 0.85 \
  --reward_num_nodes 1 --reward_num_gpus_per_node 2 \
  --rollout_batch_size 32 --micro_rollout_batch_size 4 \
  --train_batch_size 64 --micro_train_batch_size 2 \
  --max_len 4096 --max_new_tokens 1024 \
  --zero_stage 3 --bf16 --gradient_checkpointing --actor_learning_rate 1e-6 \
  --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 \
  --save_path "$SAVE" --save_steps 50 \
  --reward.judge.schedule listwise --reward.judge.group_size 4 --reward.judge.rounds 4 \
  --reward.judge.backend hf --reward.judge.max_new_tokens 1024 \
  --reward.image_roots "$IMAGE_ROOT" \
  "$@"
