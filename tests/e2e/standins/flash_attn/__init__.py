"""E2E stand-in for flash-attn: OpenRLHF imports ``flash_attn.bert_padding`` and
``flash_attn.utils.distributed`` at module level; the CPU paths of an e2e run never call them.
No ``ops`` subpackage, so OpenRLHF's optional Triton import fails and it takes its CPU fallback."""
