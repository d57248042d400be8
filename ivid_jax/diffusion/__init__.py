"""Gaussian diffusion: schedules, the training objective, guidance and samplers."""
