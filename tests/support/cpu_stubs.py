"""Import stand-ins for GPU-only packages, for CPU machines (tests, CI).

OpenRLHF's trainer modules import ``flash_attn.bert_padding`` / ``flash_attn.utils.distributed``
(via ``openrlhf.models``; the real package needs its compiled CUDA kernels) and ``vllm`` (via
``openrlhf.trainer.ray``) at import time, though the code paths a CPU test exercises never call
them. OpenRLHF's own tests stub the same modules. The stand-ins are plain modules whose
functions raise when called; ``flash_attn`` is deliberately *not* a package, so OpenRLHF's
optional ``from flash_attn.ops.triton... import`` fails and it takes its CPU fallback (stubbing
only the compiled ``flash_attn_2_cuda`` would make the real Triton kernels importable and crash
there). Never install these where a real GPU run happens: a stub would hide a missing package.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
import uuid


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


def _unavailable(name: str):
    def call(*args, **kwargs):
        raise RuntimeError(
            f"{name} is a CPU test stand-in (tests/support/cpu_stubs.py): flash-attn is not installed"
        )

    call.__name__ = name.rsplit(".", 1)[-1]
    return call


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def install() -> list[str]:
    """Add the stand-ins that are missing; returns the names added."""
    added = []
    if not _importable("flash_attn"):
        flash, padding, utils, distributed = (
            _module(n)
            for n in (
                "flash_attn",
                "flash_attn.bert_padding",
                "flash_attn.utils",
                "flash_attn.utils.distributed",
            )
        )
        for fn in ("index_first_axis", "pad_input", "rearrange", "unpad_input"):
            setattr(padding, fn, _unavailable(f"flash_attn.bert_padding.{fn}"))
        distributed.all_gather = _unavailable("flash_attn.utils.distributed.all_gather")
        flash.bert_padding, flash.utils, utils.distributed = padding, utils, distributed
        stubs = {m.__name__: m for m in (flash, padding, utils, distributed)}
        sys.modules.update(stubs)
        added += list(stubs)
    if not _importable("vllm"):
        vllm = _module("vllm")

        class SamplingParams:  # the fields OpenRLHF reads and sets
            def __init__(self, **kwargs):
                self.__dict__.update(kwargs)

        vllm.SamplingParams = SamplingParams
        inputs = _module("vllm.inputs")

        def TokensPrompt(**kwargs):  # noqa: N802 - mirrors vllm's TypedDict constructor
            return dict(kwargs)

        inputs.TokensPrompt = TokensPrompt
        utils = _module("vllm.utils")
        utils.random_uuid = lambda: uuid.uuid4().hex
        vllm.inputs, vllm.utils = inputs, utils
        sys.modules.update({"vllm": vllm, "vllm.inputs": inputs, "vllm.utils": utils})
        added += ["vllm", "vllm.inputs", "vllm.utils"]
    return added


def setup_worker_cpu() -> None:
    """``worker_process_setup_hook`` for CPU test clusters: stand-ins, then the plugin's hook."""
    install()
    from openrlhf_visualprm.plugin.worker_hook import setup_worker

    setup_worker()
