"""Feature normalisation, fitted on training data and stored in the checkpoint as plain JSON lists."""

from __future__ import annotations

import dataclasses

import numpy as np

from .hardware import relative_store_features


def signed_log(x, xp=np):
    """sign(x) * log1p(|x|): tames counts that span many orders of magnitude, keeps zero at zero."""
    return xp.sign(x) * xp.log1p(xp.abs(x))


STORE_SCALINGS = ("log", "linear", "quantile")
QUANTILE_KNOTS = 65


def _quantile_map(x, knots, xp):
    """Each column of x [..., F] through its training CDF (knots [K, F], strictly increasing), into [0, 1]."""
    levels = xp.linspace(0.0, 1.0, knots.shape[0])
    if xp is np:
        return np.stack([np.interp(x[..., f], knots[:, f], levels) for f in range(knots.shape[1])], axis=-1)
    import jax

    return jax.vmap(xp.interp, in_axes=(-1, 1, None), out_axes=-1)(x, knots, levels)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Store features are rescaled per column, then standardised; workload features are standardised.

    Store scalings: "log" (signed_log: sign(x) log1p|x|), "linear" (none: TVM's PerStoreFeature already
    log-scales its counts) or "quantile" (each column through its training CDF into [0, 1], so an input
    outside the training range saturates instead of extrapolating, as a tree's split does; not standardised, so
    that the model's piecewise-linear bins see [0, 1]).

    A column that is constant in training gets std 1, so an unseen value (say, a new thread count) moves the
    input by its raw difference instead of blowing up. The hardware vector is only centred, never scaled: it
    is already in documented units (flags, log2 sizes), and a std fitted on a handful of training platforms
    turns an unseen platform into an extreme input (leave-one-platform-out PCA 0.54 scaled, 0.70 centred).
    With `hardware_varied`, hardware entries that never varied in training (the cache sizes of a dataset from
    one host, say) are zeroed: the model learned nothing about them, so an unseen value would only add noise.
    With `relative`, every store row gains hardware.relative_store_features (its footprints against this machine's
    caches, its parallel work against its threads) before it is scaled like the other columns.
    """

    store_mean: np.ndarray
    store_std: np.ndarray
    workload_mean: np.ndarray
    workload_std: np.ndarray
    hardware_mean: np.ndarray
    hardware_std: np.ndarray
    store_scaling: str = "log"
    store_knots: np.ndarray | None = None  # [QUANTILE_KNOTS, F] for "quantile"
    hardware_varied: np.ndarray | None = None  # [H] 1.0 where the entry varied in training; None: keep all
    relative: bool = False

    @classmethod
    def fit(cls, features: np.ndarray, mask: np.ndarray, workload: np.ndarray, hardware: np.ndarray,
            store_scaling: str = "log", only_varied_hardware: bool = False, relative: bool = False) -> "Normalizer":
        if store_scaling not in STORE_SCALINGS:
            raise ValueError(f"unknown store scaling {store_scaling!r}; choose {', '.join(STORE_SCALINGS)}")
        rows, knots = _store_rows(features, mask, hardware, relative), None
        if store_scaling == "quantile" and len(rows):
            knots = np.quantile(rows, np.linspace(0, 1, QUANTILE_KNOTS), axis=0)
            knots = (knots + 1e-4 * np.arange(QUANTILE_KNOTS)[:, None]).astype(np.float32)  # ties -> increasing
        scaled = cls._scale(rows, store_scaling, knots, np)

        def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if len(x) == 0:
                return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
            std = x.std(0)
            return x.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

        hardware_mean, _ = stats(hardware)
        varied = (np.ptp(hardware, axis=0) > 1e-6).astype(np.float32) \
            if only_varied_hardware and len(hardware) else None
        store_mean, store_std = stats(scaled)
        if store_scaling == "quantile":  # already in [0, 1]; piecewise-linear bins (model.py) need it unshifted
            store_mean, store_std = np.zeros_like(store_mean), np.ones_like(store_std)
        return cls(store_mean, store_std, *stats(workload), hardware_mean, np.ones_like(hardware_mean), store_scaling,
                   knots, varied, relative)

    @staticmethod
    def _scale(rows, scaling: str, knots, xp):
        if scaling == "log":
            return signed_log(rows, xp)
        if scaling == "quantile" and knots is not None:
            return _quantile_map(rows, knots, xp)
        return rows

    def apply(self, features, mask, workload, hardware, xp=np):
        """Normalised (features, mask, workload, hardware); xp=jax.numpy runs it inside a jit."""
        if xp is np:  # only the real store rows: a padded dataset is mostly padding (100k programs: 15 -> 8 GB peak)
            real = np.asarray(mask, bool)
            store = np.zeros((*features.shape[:-1], len(self.store_mean)), np.float32)
            rows = self._scale(_store_rows(features, real, hardware, self.relative), self.store_scaling,
                               self.store_knots, np)
            store[real] = (rows - self.store_mean) / self.store_std
        else:
            if self.relative:
                features = xp.concatenate([features, relative_store_features(features, hardware[:, None], xp)], -1)
            rows = self._scale(features, self.store_scaling, self.store_knots, xp)
            store = ((rows - self.store_mean) / self.store_std) * mask[..., None]
        # a model fitted before hardware features were appended reads the leading entries it knows
        hardware = (hardware[..., : len(self.hardware_mean)] - self.hardware_mean) / self.hardware_std
        if self.hardware_varied is not None:
            hardware = hardware * self.hardware_varied
        return (store.astype(xp.float32), mask,
                ((workload - self.workload_mean) / self.workload_std).astype(xp.float32), hardware.astype(xp.float32))

    def to_dict(self) -> dict:
        arrays = {name: getattr(self, name).tolist() for name in self._arrays()}
        optional = {name: getattr(self, name).tolist() for name in ("store_knots", "hardware_varied")
                    if getattr(self, name) is not None}
        return {**arrays, "store_scaling": self.store_scaling, **optional, "relative": self.relative}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        """Checkpoints written before store_scaling existed always used "log"."""
        optional = {name: np.asarray(values[name], np.float32) for name in ("store_knots", "hardware_varied")
                    if values.get(name) is not None}
        return cls(**{name: np.asarray(values[name], np.float32) for name in cls._arrays()},
                   store_scaling=values.get("store_scaling", "log"), **optional,
                   relative=bool(values.get("relative", False)))

    @classmethod
    def _arrays(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)
                if f.name not in ("store_scaling", "store_knots", "hardware_varied", "relative")]


def _store_rows(features: np.ndarray, mask: np.ndarray, hardware: np.ndarray, relative: bool) -> np.ndarray:
    """The real store rows [R, F], with their relative features appended when `relative`."""
    rows = features[mask]
    if not relative:
        return rows
    program = np.nonzero(mask)[0]
    hardware = np.broadcast_to(hardware, (len(mask), hardware.shape[-1]))[program]
    return np.concatenate([rows, relative_store_features(rows, hardware)], axis=-1).astype(np.float32)
