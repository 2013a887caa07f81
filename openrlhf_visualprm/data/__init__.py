"""Dataset adapters: released formats in, what OpenRLHF and our evaluators read out.

Names are imported lazily (``from openrlhf_visualprm.data import convert_math``) so that
``import openrlhf_visualprm.data.demo_data`` stays free of torch.
"""

from __future__ import annotations

from openrlhf_visualprm.lazy import lazy_exports

_EXPORTS = {
    "iter_rows": "records",
    "read_records": "records",
    "write_records": "records",
    "ErrorLog": "records",
    "BadDataError": "records",
    "ImageStore": "image_refs",
    "convert_math": "math_prompts",
    "encode_label": "math_prompts",
    "read_v1": "visualprm400k",
    "read_v11_raw": "visualprm400k",
    "to_stepwise": "visualprm400k",
    "to_internvl": "visualprm400k",
    "read_processbench": "benchmarks",
    "read_vlrewardbench": "benchmarks",
    "read_bon": "benchmarks",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
