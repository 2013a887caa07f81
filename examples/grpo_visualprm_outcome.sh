#!/usr/bin/env bash
# GRPO with VisualPRM (min over steps) + a math answer check, for a Qwen2.5-VL-7B policy on
# geometry3k-style data.
#
# Resource layout, one node with 8 x 80 GB GPUs (total 8, see the GPU line of --dry-run):
#   GPUs 0-3  policy, DeepSpeed ZeRO-3, and the reference model on the same GPUs (--train.colocate_actor_ref)
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
  --actor.model_name_or_path "$POLICY" \
  --reward.model_name_or_path visualprm \
  --algo.advantage.estimator group_norm --rollout.n_samples_per_prompt 8 \
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key label --data.image_key images \
  --data.apply_chat_template --data.max_images_per_prompt 1 --actor.freeze_visual_encoder \
  --actor.num_nodes 1 --actor.num_gpus_per_node 4 \
  --ref.num_nodes 1 --ref.num_gpus_per_node 4 --train.colocate_actor_ref \
  --vllm.num_engines 2 --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.85 \
  --reward.num_nodes 1 --reward.num_gpus_per_node 2 \
  --rollout.batch_size 64 --rollout.micro_batch_size 4 \
  --train.batch_size 128 --train.micro_batch_size 2 \
  --data.max_len 4096 --rollout.max_new_tokens 1024 --rollout.temperature 1.0 \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable --actor.adam.lr 1e-6 \
  --algo.kl.init_coef 0.001 --algo.kl.use_loss --algo.kl.estimator k3 \
  --ckpt.output_dir "$SAVE" --ckpt.save_steps 50 --logger.logging_steps 1 \
  --reward.prm.aggregation min --reward.prm.credit anchored \
  --reward.outcome.enable \
  --reward.weights prm=0.5,outcome=1 \
  --reward.image_roots "$IMAGE_ROOT" \
  "$@"
