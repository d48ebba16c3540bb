"""SRPO, the critic's half of Dual-IPO: the critic learns from its own confident, self-consistent judgments.

- `data`: judgments -> consistency-filtered votes -> certainty -> SFT examples (the most frequent majority
  rationale per presentation order) and DPO pairs (majority vs minority rationale), with counts;
- `certainty`: the estimators, `vote` (majority vote share) and `pce` (the paper's Preference Certainty
  Estimator, from the rationale's log-likelihood ratio to a reference critic);
- `train`: the critic update, SFT mixed with the seed set or certainty-weighted sequence DPO with an NLL term
  and an abstention guard, on the explicit loop of `critic_training.train_loop`.
"""
