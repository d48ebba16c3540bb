"""dualipo: Dual-IPO post-training of text-to-video diffusion models with a self-refining VLM critic."""

__version__ = "0.1.0"
