#!/usr/bin/env bash
# GRPO with VisualPRM (min over steps) + a math answer check, for a Qwen2.5-VL-7B policy on
# geometry3k-style data.
#
# Resource layout, one node with 8 x 80 GB GPUs (total 8, see the GPU line of --dry-run):
#   GPUs 0-3  policy, DeepSpeed ZeRO-3, and the reference model on the same GPUs (--colocate_actor_ref)
#   GPUs 4-5  2 vLLM rollout engines (TP 1), the image goes to vLLM as multi_modal_data
#   GPUs 6-7  2 plugin reward actors, each with VisualPRM-8B in bf16 (~17 GB); the answer check
#             runs in CPU processes next to them. Each GRPO group of 8 responses is scored in one
#             shared-prefix PRM pass (image + question encoded once).
# Reward per response (--reward.prm.credit anchored, README "Credit assignment"): the answer check
# decides, VisualPRM ranks only within the same outcome:
#   1.0 * ([answer == label.answer] - group mean) + 0.5 * (s - mean of s over the same outcome),
# s = the lowest P(+) from the step holding the final answer on; no hack of
# benchmarks/credit_probe.py pays under it. (The scalar 0.5 * min + outcome under GRPO's
# normalisation, --reward.prm.credit off, pays for collapsing a solution into one step.)
#
# Data: jsonl rows like {"prompt": "<image>Find x.", "images": ["train/0001.png"],
#       "label": {"answer": "12", "question": "Find x."}}; image paths lie under IMAGE_ROOT.
#       `openrlhf-visualprm convert-data --help` writes this layout from geometry3k.
# Usage: examples/grpo_visualprm_outcome.sh [--dry-run [--json]] [more OpenRLHF or plugin flags]
set -euo pipefail
POLICY=${POLICY:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA=${DATA:-data/geo3k/train.jsonl}
IMAGE_ROOT=${IMAGE_ROOT:-data/geo3k}
SAVE=${SAVE:-checkpoints/grpo-visualprm-outcome}

exec "${PYTHON:-python}" -m openrlhf_visualprm.cli train \
  --pretrain "$POLICY" \
  --reward_pretrain visualprm \
  --advantage_estimator group_norm --n_samples_per_prompt 8 \
  --prompt_data "$DATA" --input_key prompt --label_key label --image_key images \
  --apply_chat_template --max_images_per_prompt 1 --freeze_visual_encoder \
  --actor_num_nodes 1 --actor_num_gpus_per_node 4 \
  --ref_num_nodes 1 --ref_num_gpus_per_node 4 --colocate_actor_ref \
  --vllm_num_engines 2 --vllm_tensor_parallel_size 1 --vllm_gpu_memory_utilization 0.85 \
  --reward_num_nodes 1 --reward_num_gpus_per_node 2 \
  --rollout_batch_size 64 --micro_rollout_batch_size 4 \
  --train_batch_size 128 --micro_train_batch_size 2 \
  --max_len 4096 --max_new_tokens 1024 --temperature 1.0 \
  --zero_stage 3 --bf16 --gradient_checkpointing --actor_learning_rate 1e-6 \
  --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 \
  --save_path "$SAVE" --save_steps 50 --logging_steps 1 \
  --reward.prm.aggregation min --reward.prm.credit anchored \
  --reward.outcome.enable \
  --reward.weights prm=0.5,outcome=1 \
  --reward.image_roots "$IMAGE_ROOT" \
  "$@"
