#!/usr/bin/env bash
# REINFORCE++ (baseline variant) with VisualPRM credit on the policy's tokens plus a math answer
# check, for a Qwen2.5-VL-7B policy on geometry3k-style data.
#
# Credit (--reward.prm.credit anchored, README "Credit assignment"): the answer check decides the
# outcome class, the PRM ranks responses only within it: every token gets
#   (correct - group mean) + (s - mean of s over the responses with the same outcome),
# s = the lowest P(+) from the step holding the final answer on. No hack of
# benchmarks/credit_probe.py pays under it (padding, repeating, appending confident steps,
# collapsing to one step, saying nothing). OpenRLHF then whitens the returns over the batch.
# For per-step credit, --reward.prm.credit process_grpo / pure / diff_group (each pays for some hack).
#
# Resource layout, one node with 8 x 80 GB GPUs (total 8):
#   GPUs 0-3  policy (ZeRO-3) + reference model, colocated
#   GPUs 4-5  2 vLLM engines (TP 1)
#   GPUs 6-7  2 plugin reward actors with VisualPRM-8B (bf16); answer checks in CPU processes
# Data layout: as in grpo_visualprm_outcome.sh.
# Usage: examples/reinforce_pp_dense_visualprm.sh [--dry-run [--json]] [more flags]
set -euo pipefail
POLICY=${POLICY:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA=${DATA:-data/geo3k/train.jsonl}
IMAGE_ROOT=${IMAGE_ROOT:-data/geo3k}
SAVE=${SAVE:-checkpoints/reinforce-pp-dense-visualprm}

exec "${PYTHON:-python}" -m openrlhf_visualprm.cli train \
  --actor.model_name_or_path "$POLICY" \
  --reward.model_name_or_path visualprm \
  --algo.advantage.estimator reinforce_baseline --rollout.n_samples_per_prompt 4 \
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key label --data.image_key images \
  --data.apply_chat_template --data.max_images_per_prompt 1 --actor.freeze_visual_encoder \
  --actor.num_nodes 1 --actor.num_gpus_per_node 4 \
  --ref.num_nodes 1 --ref.num_gpus_per_node 4 --train.colocate_actor_ref \
  --vllm.num_engines 2 --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.85 \
  --reward.num_nodes 1 --reward.num_gpus_per_node 2 \
  --rollout.batch_size 128 --rollout.micro_batch_size 4 \
  --train.batch_size 128 --train.micro_batch_size 2 \
  --data.max_len 4096 --rollout.max_new_tokens 1024 \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable --actor.adam.lr 5e-7 \
  --algo.kl.init_coef 0.001 --algo.kl.use_loss --algo.kl.estimator k2 \
  --ckpt.output_dir "$SAVE" --ckpt.save_steps 50 \
  --reward.prm.credit anchored --reward.prm.max_steps 12 \
  --reward.outcome.enable \
  --reward.weights prm=1,outcome=1 \
  --reward.image_roots "$IMAGE_ROOT" \
  "$@"
