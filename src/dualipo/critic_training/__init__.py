"""Critic training, all of it: the cold start, self-refinement (SRPO) and the data they are made of.

- `seed`, `toy_videos`: seed sets (format, import, the shapes world's oracle-labelled sets) and their videos;
- `examples`: seed records, captions and text-only comparisons -> training examples;
- `loop`: the explicit training loop, its batching and sequence losses; `cold_start`: captioning pretraining
  and the cold start on it; `evaluate`: a critic on labelled pairs and on captions;
- SRPO, the critic's half of Dual-IPO (it learns from its own confident, self-consistent judgments):
  `refine_data` (judgments -> consistency filter -> SFT examples and DPO pairs, with counts), `certainty`
  (`vote` share or the paper's PCE) and `refine` (SFT mixed with the seed set, or certainty-weighted DPO).
"""
