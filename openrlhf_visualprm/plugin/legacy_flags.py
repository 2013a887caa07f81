"""Flat flag names from OpenRLHF <= 0.10.1 and the dotted 0.11 flags they became.

OpenRLHF 0.11 rejects the flat names; users (and most published scripts) still type them. The
table is data, checked by a test against the installed OpenRLHF parser, so an upgrade that
renames a target fails loudly instead of passing a flag OpenRLHF no longer knows.
"""

from __future__ import annotations

# legacy -> 0.11 (same value, same arity)
RENAMED: dict[str, str] = {
    # models
    "--pretrain": "--actor.model_name_or_path",
    "--reward_pretrain": "--reward.model_name_or_path",
    "--remote_rm_url": "--reward.remote_url",
    "--critic_pretrain": "--critic.model_name_or_path",
    "--agent_func_path": "--train.agent_func_path",
    "--value_head_prefix": "--ds.value_head_prefix",
    # data
    "--prompt_data": "--data.prompt_dataset",
    "--prompt_data_probs": "--data.prompt_probs",
    "--prompt_split": "--data.prompt_split",
    "--input_key": "--data.input_key",
    "--label_key": "--data.label_key",
    "--image_key": "--data.image_key",
    "--input_template": "--data.input_template",
    "--apply_chat_template": "--data.apply_chat_template",
    "--max_samples": "--data.max_samples",
    "--max_len": "--data.max_len",
    "--max_images_per_prompt": "--data.max_images_per_prompt",
    "--disable_fast_tokenizer": "--data.disable_fast_tokenizer",
    "--eval_dataset": "--eval.dataset",
    "--eval_split": "--eval.split",
    "--eval_temperature": "--eval.temperature",
    "--eval_n_samples_per_prompt": "--eval.n_samples_per_prompt",
    "--eval_steps": "--eval.steps",
    # algorithm
    "--advantage_estimator": "--algo.advantage.estimator",
    "--gamma": "--algo.advantage.gamma",
    "--lambd": "--algo.advantage.lambd",
    "--no_advantage_std_norm": "--algo.advantage.no_std_norm",
    "--init_kl_coef": "--algo.kl.init_coef",
    "--kl_target": "--algo.kl.target",
    "--kl_horizon": "--algo.kl.horizon",
    "--kl_estimator": "--algo.kl.estimator",
    "--use_kl_loss": "--algo.kl.use_loss",
    "--dynamic_filtering": "--algo.dynamic_filtering_enable",
    "--dynamic_filtering_reward_range": "--algo.dynamic_filtering_range",
    "--reward_clip_range": "--reward.clip_range",
    "--normalize_reward": "--reward.normalize_enable",
    "--overlong_buffer_len": "--reward.overlong_buffer_len",
    "--overlong_penalty_factor": "--reward.overlong_penalty_factor",
    "--stop_properly_penalty_coef": "--reward.stop_properly_penalty_coef",
    # rollout
    "--n_samples_per_prompt": "--rollout.n_samples_per_prompt",
    "--rollout_batch_size": "--rollout.batch_size",
    "--micro_rollout_batch_size": "--rollout.micro_batch_size",
    "--vllm_generate_batch_size": "--rollout.vllm_generate_batch_size",
    "--generate_max_len": "--rollout.max_new_tokens",
    "--max_new_tokens": "--rollout.max_new_tokens",
    "--temperature": "--rollout.temperature",
    "--top_p": "--rollout.top_p",
    "--rollout_max_tokens_per_gpu": "--rollout.max_tokens_per_gpu",
    # training
    "--train_batch_size": "--train.batch_size",
    "--micro_train_batch_size": "--train.micro_batch_size",
    "--max_epochs": "--train.max_epochs",
    "--num_episodes": "--train.num_episodes",
    "--seed": "--train.seed",
    "--full_determinism": "--train.full_determinism_enable",
    "--async_train": "--train.async_enable",
    "--partial_rollout": "--train.partial_rollout_enable",
    "--use_dynamic_batch": "--train.dynamic_batch_enable",
    "--train_max_tokens_per_gpu": "--train.max_tokens_per_gpu",
    "--enable_ema": "--train.enable_ema",
    "--ema_beta": "--train.ema_beta",
    "--colocate_actor_ref": "--train.colocate_actor_ref",
    "--colocate_critic_reward": "--train.colocate_critic_reward",
    "--colocate_all_models": "--train.colocate_all",
    "--freezing_actor_steps": "--critic.freezing_steps",
    # actor / critic optimisation
    "--actor_learning_rate": "--actor.adam.lr",
    "--critic_learning_rate": "--critic.adam.lr",
    "--adam_betas": "--actor.adam.betas",
    "--l2": "--actor.adam.weight_decay",
    "--lr_scheduler": "--actor.lr_scheduler",
    "--lr_warmup_ratio": "--actor.lr_warmup_ratio",
    "--min_lr_ratio": "--actor.min_lr_ratio",
    "--max_norm": "--actor.max_norm",
    "--eps_clip": "--actor.eps_clip",
    "--eps_clip_low_high": "--actor.eps_clip_low_high",
    "--dual_clip": "--actor.dual_clip",
    "--value_clip": "--critic.value_clip",
    "--policy_loss_type": "--actor.policy_loss_type",
    "--entropy_loss_coef": "--actor.entropy_coef",
    "--aux_loss_coef": "--actor.aux_loss_coef",
    "--gradient_checkpointing": "--actor.gradient_checkpointing_enable",
    "--gradient_checkpointing_use_reentrant": "--actor.gradient_checkpointing_reentrant",
    "--freeze_visual_encoder": "--actor.freeze_visual_encoder",
    "--save_value_network": "--critic.save_value_network",
    # placement
    "--actor_num_nodes": "--actor.num_nodes",
    "--actor_num_gpus_per_node": "--actor.num_gpus_per_node",
    "--ref_num_nodes": "--ref.num_nodes",
    "--ref_num_gpus_per_node": "--ref.num_gpus_per_node",
    "--critic_num_nodes": "--critic.num_nodes",
    "--critic_num_gpus_per_node": "--critic.num_gpus_per_node",
    "--reward_num_nodes": "--reward.num_nodes",
    "--reward_num_gpus_per_node": "--reward.num_gpus_per_node",
    # vLLM
    "--vllm_num_engines": "--vllm.num_engines",
    "--vllm_tensor_parallel_size": "--vllm.tensor_parallel_size",
    "--vllm_sync_backend": "--vllm.sync_backend",
    "--vllm_sync_with_ray": "--vllm.sync_with_ray",
    "--enable_prefix_caching": "--vllm.enable_prefix_caching",
    "--enforce_eager": "--vllm.enforce_eager",
    "--vllm_enable_sleep": "--vllm.enable_sleep",
    "--vllm_gpu_memory_utilization": "--vllm.gpu_memory_utilization",
    # DeepSpeed
    "--zero_stage": "--ds.zero_stage",
    "--zpg": "--ds.zpg",
    "--adam_offload": "--ds.adam_offload",
    "--attn_implementation": "--ds.attn_implementation",
    "--use_liger_kernel": "--ds.use_liger_kernel",
    "--grad_accum_dtype": "--ds.grad_accum_dtype",
    "--overlap_comm": "--ds.overlap_comm",
    "--deepcompile": "--ds.deepcompile",
    "--deepspeed_enable_sleep": "--ds.enable_sleep",
    "--ds_tensor_parallel_size": "--ds.tensor_parallel_size",
    "--packing_samples": "--ds.packing_samples",
    "--ring_attn_size": "--ds.ring_attn_size",
    "--ring_head_stride": "--ds.ring_attn_head_stride",
    "--load_in_4bit": "--ds.load_in_4bit",
    "--lora_rank": "--ds.lora.rank",
    "--lora_alpha": "--ds.lora.alpha",
    "--target_modules": "--ds.lora.target_modules",
    "--lora_dropout": "--ds.lora.dropout",
    "--use_universal_ckpt": "--ds.use_universal_ckpt",
    # checkpoints and logging
    "--save_path": "--ckpt.output_dir",
    "--ckpt_path": "--ckpt.path",
    "--save_steps": "--ckpt.save_steps",
    "--save_hf_ckpt": "--ckpt.save_hf",
    "--disable_ds_ckpt": "--ckpt.disable_ds",
    "--max_ckpt_num": "--ckpt.max_num",
    "--max_ckpt_mem": "--ckpt.max_mem",
    "--load_checkpoint": "--ckpt.load_enable",
    "--best_metric_key": "--ckpt.best_metric_key",
    "--logging_steps": "--logger.logging_steps",
    "--use_wandb": "--logger.wandb.key",
    "--wandb_org": "--logger.wandb.org",
    "--wandb_group": "--logger.wandb.group",
    "--wandb_project": "--logger.wandb.project",
    "--wandb_run_name": "--logger.wandb.run_name",
    "--use_tensorboard": "--logger.tensorboard_dir",
}

# legacy switches that became a flag with a value (or two flags): legacy -> replacement tokens
EXPANDED: dict[str, tuple[str, ...]] = {
    "--bf16": ("--ds.param_dtype", "bf16"),
    "--fp16": ("--ds.param_dtype", "fp16"),
    "--flash_attn": ("--ds.attn_implementation", "flash_attention_2"),
    "--ref_reward_offload": ("--ref.offload", "--reward.offload"),
}


def translate_flag(flag: str) -> tuple[str, ...] | None:
    """The 0.11 tokens for a legacy flag name, or None when ``flag`` is not a legacy name."""
    if flag in RENAMED:
        return (RENAMED[flag],)
    if flag in EXPANDED:
        return EXPANDED[flag]
    return None
