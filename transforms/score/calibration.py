"""Platt calibration of raw detector scores, fitted on validation data.

Platt (a logistic fit on the logit of the raw score) is strictly increasing, so calibrated scores keep the raw
ranking: no plateaus, no ties at the threshold (isotonic regression's plateaus would tie the highest scores).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-6


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class Platt:
    a: float
    b: float

    @classmethod
    def fit(cls, scores, labels) -> "Platt":
        """Maximum likelihood (numerically stable, BFGS), with Platt's smoothed targets against overconfidence."""
        from scipy.optimize import minimize

        x = _logit(scores)
        y = np.asarray(labels, dtype=float)
        n_pos, n_neg = y.sum(), len(y) - y.sum()
        t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

        def nll(ab):
            z = ab[0] * x + ab[1]
            return float(np.sum(np.logaddexp(0, z) - t * z)) / len(x)

        def grad(ab):
            z = ab[0] * x + ab[1]
            r = 1 / (1 + np.exp(-np.clip(z, -500, 500))) - t
            return np.array([np.sum(r * x), np.sum(r)]) / len(x)

        res = minimize(nll, np.array([1.0, 0.0]), jac=grad, method="BFGS")
        return cls(float(res.x[0]), float(res.x[1]))

    def __call__(self, scores) -> np.ndarray:
        z = np.clip(self.a * _logit(scores) + self.b, -500, 500)
        return 1 / (1 + np.exp(-z))

    def to_json(self) -> dict:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, obj: dict) -> "Platt":
        return cls(float(obj["a"]), float(obj["b"]))
