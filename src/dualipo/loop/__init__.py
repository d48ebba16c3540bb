"""The stages of a Dual-IPO round as plain functions of their inputs (sampling, judging and the preference data,
training and refinement, evaluation), and what the loop uses around them (processes, prompts, setup, placement,
metrics, the end-of-run table). `dualipo.rounds` calls them in order and alone reads and writes the run ledger.
"""
