"""The XGBoost baseline, set up as TVM's XGBModel is: one row per store, a program's score is the sum of its
rows' predictions ("pack-sum"), squared error on normalised throughput weighted by that throughput.

One change from TVM: each row's hessian is the weight times its program's store count. With TVM's hessian
(the weight alone) a boosting round moves a k-store program's sum by eta * k times its error, which diverges
once eta * k > 2: on this dataset's 11-17-store programs the booster blew up and ranked every other program
at chance (train PCA 0.54 on the full dataset, 0.86 on the same data without them).

With `hardware` given to fit and predict, the program's hardware vector is appended to each of its store
rows (`xgb+hw`): the cheapest joint program x hardware model, the bar a structured model must clear."""

from __future__ import annotations

import numpy as np
import xgboost

from .errors import UserError


class PackSumXGB:
    def __init__(self, rounds: int = 300, max_depth: int = 10, eta: float = 0.2, seed: int = 43,
                 subsample: float = 1.0, colsample: float = 1.0):
        self.rounds = rounds
        self.params = {"max_depth": max_depth, "gamma": 0.001, "min_child_weight": 0, "eta": eta, "seed": seed,
                       "nthread": 2, "verbosity": 0}
        if subsample < 1.0 or colsample < 1.0:  # row and feature sampling: boosters that see different data
            self.params.update(subsample=subsample, colsample_bytree=colsample)
        self.booster = None

    @staticmethod
    def _rows(features: np.ndarray, mask: np.ndarray, hardware: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        program, store = np.nonzero(mask)
        rows = features[program, store]
        if hardware is not None:
            rows = np.concatenate([rows, np.broadcast_to(hardware, (len(features), hardware.shape[-1]))[program]], 1)
        return rows, program

    def fit(self, features: np.ndarray, mask: np.ndarray, labels: np.ndarray,
            hardware: np.ndarray | None = None, offset: np.ndarray | None = None) -> "PackSumXGB":
        """features [N,S,F], mask [N,S], labels [N] (normalised throughput), hardware [N,H] or None; offset [N]:
        another model's prediction of each label, which the trees then correct (predict returns the correction)."""
        self.booster = self._boost(features, mask, labels, hardware, self.rounds, start=None, offset=offset)
        return self

    def boost_more(self, features: np.ndarray, mask: np.ndarray, labels: np.ndarray, rounds: int,
                   hardware: np.ndarray | None = None) -> "PackSumXGB":
        """`rounds` more trees fitted to these programs on top of the current ones (online updates)."""
        self.booster = self._boost(features, mask, labels, hardware, rounds, start=self.booster)
        return self

    def _boost(self, features, mask, labels, hardware, rounds: int, start, offset=None) -> xgboost.Booster:
        rows, program = self._rows(features, mask, hardware)
        y = labels[program]
        stores = np.bincount(program, minlength=len(labels))[program]
        matrix = xgboost.DMatrix(rows, label=y, weight=y)
        base = np.zeros(len(labels)) if offset is None else np.asarray(offset, np.float64)

        def pack_sum_square_error(preds, dtrain):
            sums = np.bincount(program, weights=preds, minlength=len(labels))[program] + base[program]
            weight = dtrain.get_weight()
            return (sums - y) * weight, np.maximum(weight * stores, 1e-6)

        return xgboost.train(self.params, matrix, rounds, obj=pack_sum_square_error, xgb_model=start)

    def save(self, path) -> None:
        """XGBoost's own JSON format (no pickle)."""
        self.booster.save_model(str(path))

    def to_json(self) -> bytes:
        """XGBoost's JSON model (no pickle), as bytes."""
        return bytes(self.booster.save_raw(raw_format="json"))

    @classmethod
    def load(cls, path, **kwargs) -> "PackSumXGB":
        model = cls(**kwargs)
        try:
            model.booster = xgboost.Booster(model_file=str(path))
        except xgboost.core.XGBoostError:
            raise UserError(f"{path} is not a readable XGBoost model; delete it to fit again") from None
        return model

    def predict(self, features: np.ndarray, mask: np.ndarray, hardware: np.ndarray | None = None) -> np.ndarray:
        """Scores [N]; pass `hardware` ([N,H] or one [H] vector) exactly when fit had it."""
        rows, program = self._rows(features, mask, hardware)
        preds = self.booster.predict(xgboost.DMatrix(rows))
        return np.bincount(program, weights=preds, minlength=len(features)).astype(np.float32)
