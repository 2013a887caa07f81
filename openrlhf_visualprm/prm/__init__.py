"""VisualPRM: prompt template, scorer (per-step / single / shared-prefix paths) and aggregation.

Model math only: nothing here imports Ray or OpenRLHF.
"""
