"""The stages of a Dual-IPO round, driven by `dualipo.rounds`: sampling, judging, preferences, training, critic
refinement and evaluation, plus what they share (the run context, sharding across processes, metrics, the
end-of-run table). Every stage reads what earlier stages recorded in the run ledger and records its own items.
"""
