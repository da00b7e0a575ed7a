"""Training: losses, AdamW, windowing with carried state, the fit loop, online updates."""

from kizzasi_lite.train.losses import gaussian_nll, huber, mae, mse
from kizzasi_lite.train.optim import AdamW, clip_by_global_norm, cosine_schedule

__all__ = ["AdamW", "clip_by_global_norm", "cosine_schedule", "gaussian_nll", "huber", "mae", "mse"]
