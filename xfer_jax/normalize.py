"""Feature normalisation, fitted on training data and stored in the checkpoint as plain JSON lists."""

from __future__ import annotations

import dataclasses

import numpy as np


def signed_log(x, xp=np):
    """sign(x) * log1p(|x|): tames counts that span many orders of magnitude, keeps zero at zero."""
    return xp.sign(x) * xp.log1p(xp.abs(x))


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """(signed_log(x) - mean) / std per column, for store features; plain standardisation for the others.

    A column that is constant in training gets std 1, so an unseen value (say, a new thread count) moves the
    input by its raw difference instead of blowing up. The hardware vector is only centred, never scaled: it
    is already in documented units (flags, log2 sizes), and a std fitted on a handful of training platforms
    turns an unseen platform into an extreme input (leave-one-platform-out PCA 0.54 scaled, 0.70 centred).
    """

    store_mean: np.ndarray
    store_std: np.ndarray
    workload_mean: np.ndarray
    workload_std: np.ndarray
    hardware_mean: np.ndarray
    hardware_std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, mask: np.ndarray, workload: np.ndarray, hardware: np.ndarray) -> "Normalizer":
        rows = signed_log(features[mask])

        def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if len(x) == 0:
                return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
            std = x.std(0)
            return x.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

        hardware_mean, _ = stats(hardware)
        return cls(*stats(rows), *stats(workload), hardware_mean, np.ones_like(hardware_mean))

    def apply(self, features, mask, workload, hardware, xp=np):
        """Normalised (features, mask, workload, hardware); xp=jax.numpy runs it inside a jit."""
        store = ((signed_log(features, xp) - self.store_mean) / self.store_std) * mask[..., None]
        return (store.astype(xp.float32), mask,
                ((workload - self.workload_mean) / self.workload_std).astype(xp.float32),
                ((hardware - self.hardware_mean) / self.hardware_std).astype(xp.float32))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        return cls(**{f.name: np.asarray(values[f.name], np.float32) for f in dataclasses.fields(cls)})
