"""openrlhf-visualprm: multimodal reward models (VisualPRM, MR. Judge) for OpenRLHF.

Layout (README.md, "Layout"): ``prm/`` and ``judge/`` hold the model math and know nothing of Ray or
OpenRLHF; ``workers/`` knows Ray; ``plugin/`` is the only place that imports OpenRLHF internals.
"""

__version__ = "0.1.0"
