"""Critic training: the cold start and self-refinement (SRPO, the critic's half of Dual-IPO), with their data,
their training loop and the critic's evaluation on labelled pairs (docs/critic.md, docs/srpo.md)."""
