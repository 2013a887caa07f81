"""Evaluators measuring the reward models the way the papers did.

``prm_bench`` (VisualProcessBench step F1), ``judge_bench`` (VL-RewardBench, both candidate orders),
``bon`` (best-of-N selection accuracy); shared pieces: ``metrics`` (pure functions), ``loop``
(read / validate / resume / report bad data), ``results`` (append-only resumable results), ``plots``.
"""
