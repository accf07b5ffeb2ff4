"""Buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma) and customer lifetime value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from segone.exceptions import ModelInputError
from segone.models.estimator import require_fitted

FloatArray = npt.NDArray[np.float64]
Columns = npt.ArrayLike | pd.DataFrame

FORMAT_VERSION = 1
MIN_CUSTOMERS = 10
# Log-parameters are kept within e^±30: far beyond any fit seen in practice, well short of
# overflow in the likelihood, so a runaway line search cannot produce inf/nan.
_LOG_BOUND = 30.0
# Below this gradient norm (per customer, log-parameters) a fit is accepted even when L-BFGS-B
# stops on "abnormal termination in line search", which is rounding noise at the optimum.
_GRAD_OK = 1e-5


# ---------------------------------------------------------------------------- input checks


def _raise_if(mask: npt.NDArray[np.bool_], column: str, what: str) -> None:
    n = int(np.count_nonzero(mask))
    if n:
        raise ModelInputError(f"{column}: {n} {'value is' if n == 1 else 'values are'} {what}")


def _as_float(values: npt.ArrayLike, column: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ModelInputError(f"{column}: cannot read the values as numbers ({e})") from e
    _raise_if(~np.isfinite(arr), column, "NaN or infinite")
    return arr


def _from_frame(
    data: Columns, rest: tuple[npt.ArrayLike | None, ...], names: tuple[str, ...]
) -> list[FloatArray]:
    """Columns ``names`` from a DataFrame, or the arrays given one by one; checked finite."""
    if isinstance(data, pd.DataFrame):
        if any(v is not None for v in rest):
            raise ModelInputError(
                f"pass either a DataFrame or the arrays {', '.join(names)}, not both"
            )
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise ModelInputError(f"the DataFrame has no column {', '.join(missing)}")
        values: list[npt.ArrayLike] = [data[c] for c in names]
    else:
        absent = [n for n, v in zip(names[1:], rest, strict=True) if v is None]
        if absent:
            raise ModelInputError(f"{', '.join(absent)} must be given when {names[0]} is an array")
        values = [data, *rest]  # type: ignore[list-item]
    arrays = [_as_float(v, n) for v, n in zip(values, names, strict=True)]
    try:
        return list(np.broadcast_arrays(*arrays))
    except ValueError as e:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays, strict=True))
        raise ModelInputError(f"the columns differ in length: {shapes}") from e


def _rfm(
    frequency: Columns, recency: npt.ArrayLike | None, T: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x, tx, age = _from_frame(frequency, (recency, T), ("frequency", "recency", "T"))
    _raise_if(x < 0, "frequency", "negative")
    _raise_if(x != np.floor(x), "frequency", "not whole numbers (repeat purchase counts)")
    _raise_if(tx < 0, "recency", "negative")
    _raise_if(age < 0, "T", "negative")
    _raise_if(tx > age, "recency", "greater than T")
    _raise_if((x == 0) & (tx != 0), "recency", "not 0 where frequency is 0")
    return x, tx, age


def _weights(weights: npt.ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = _as_float(weights, "weights").ravel()
    if w.shape != (n,):
        raise ModelInputError(f"weights: has {w.size} values for {n} customers")
    _raise_if(w <= 0, "weights", "not positive")
    return w


def _collapse(columns: dict[str, FloatArray], w: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Identical rows merged into one with the summed weight: the likelihood is a weighted sum."""
    frame = pd.DataFrame({**columns, "_w": w})
    grouped = frame.groupby(list(columns), sort=False, as_index=False)["_w"].sum()
    return [grouped[c].to_numpy(np.float64) for c in columns], grouped["_w"].to_numpy(np.float64)


def _enough(n: float, name: str) -> None:
    if n < MIN_CUSTOMERS:
        raise ModelInputError(f"need at least {MIN_CUSTOMERS} customers to fit {name}, got {n:g}")


# ---------------------------------------------------------------------------- fitting


def _minimize(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    tol: float,
    max_iter: int,
    name: str,
) -> FloatArray:
    """Minimise a per-customer negative log-likelihood over log-parameters (L-BFGS-B)."""
    # scipy >= 1.15's L-BFGS-B calls BLAS on 4-vectors; a multi-threaded OpenBLAS makes each
    # step cost milliseconds of thread wake-ups (scipy issue #22438), 5x the whole BG/NBD fit
    with threadpool_limits(limits=1, user_api="blas"):
        res = optimize.minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(x0),
            options={"maxiter": max_iter, "ftol": tol, "gtol": tol},
        )
        # an abnormal line search (a numerical gradient a little off near the optimum, seen
        # with scipy 1.17's L-BFGS-B on Gamma-Gamma) is resumed from where it stopped, with a
        # fresh curvature memory, rather than declared a failure
        for _ in range(3):
            if res.success or not np.isfinite(res.fun) or "ABNORMAL" not in str(res.message):
                break
            res = optimize.minimize(
                fun,
                res.x,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(x0),
                options={"maxiter": max_iter, "ftol": tol, "gtol": tol},
            )
        if not res.success and np.isfinite(res.fun) and "ABNORMAL" in str(res.message):
            # still abnormal: the gradient is the problem, so finish without it
            simplex = optimize.minimize(
                lambda x: fun(x)[0],
                res.x,
                method="Nelder-Mead",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(x0),
                options={"maxiter": 200 * len(x0), "xatol": 1e-8, "fatol": tol},
            )
            if simplex.success and simplex.fun <= res.fun + abs(res.fun) * 1e-12:
                return np.asarray(simplex.x, dtype=np.float64)
    if not np.isfinite(res.fun) or not (
        res.success or (np.max(np.abs(res.jac)) < _GRAD_OK and res.nit < max_iter)
    ):
        raise ModelInputError(
            f"{name} did not converge after {res.nit} iterations ({res.message}): the data do "
            "not pin the parameters down; try penalizer_coef > 0 or more max_iter"
        )
    return np.asarray(res.x, dtype=np.float64)


def _central_gradient(
    f: Callable[[FloatArray], float], h: float = 1e-5
) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    """Value and central-difference gradient, for likelihoods whose derivatives need 2F1'."""

    def fun(theta: FloatArray) -> tuple[float, FloatArray]:
        grad = np.empty_like(theta)
        for i in range(theta.size):
            step = np.zeros_like(theta)
            step[i] = h
            grad[i] = (f(theta + step) - f(theta - step)) / (2 * h)
        return f(theta), grad

    return fun


class _Model(BaseEstimator):
    """Shared estimator plumbing: hyperparameters (``BaseEstimator``), fitted state, JSON
    persistence."""

    _param_names: ClassVar[tuple[str, ...]]
    params_: dict[str, float]
    log_likelihood_: float
    n_customers_: float

    def __init__(self, *, penalizer_coef: float = 0.0, tol: float = 1e-10, max_iter: int = 1000):
        self.penalizer_coef = penalizer_coef
        self.tol = tol
        self.max_iter = max_iter

    def set_params(self, **params: Any) -> Self:
        """Change hyperparameters; the fitted state, if any, is kept until the next ``fit``.
        An unknown name is the caller's mistake, said as a ``ModelInputError``."""
        valid = self.get_params()
        for k in params:
            if k not in valid:
                raise ModelInputError(f"{type(self).__name__} has no hyperparameter {k!r}")
        return super().set_params(**params)

    def _check_hyperparams(self) -> None:
        if not (np.isfinite(self.penalizer_coef) and self.penalizer_coef >= 0):
            raise ModelInputError(f"penalizer_coef must be >= 0, got {self.penalizer_coef}")
        if not self.tol > 0:
            raise ModelInputError(f"tol must be positive, got {self.tol}")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ModelInputError(f"max_iter must be a positive integer, got {self.max_iter}")

    def _params(self) -> tuple[float, ...]:
        require_fitted(self, "params_", "fit(...) or from_dict(...)")
        return tuple(self.params_[k] for k in self._param_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description of the fitted model, read back by ``from_dict``."""
        self._params()
        return {
            "model": type(self).__name__,
            "version": FORMAT_VERSION,
            "params": dict(self.params_),
            "hyperparams": self.get_params(),
            "n_customers": self.n_customers_,
            "log_likelihood": self.log_likelihood_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """A fitted model from ``to_dict`` output."""
        if data.get("model") != cls.__name__:
            raise ModelInputError(f"cannot load a {data.get('model')!r} model as {cls.__name__}")
        if data.get("version") != FORMAT_VERSION:
            raise ModelInputError(
                f"{cls.__name__}: format version {data.get('version')!r} is not supported "
                f"(this segone reads version {FORMAT_VERSION})"
            )
        params = {k: float(v) for k, v in data["params"].items()}
        if set(params) != set(cls._param_names):
            raise ModelInputError(f"{cls.__name__}: params must be {', '.join(cls._param_names)}")
        bad = [k for k, v in params.items() if not (np.isfinite(v) and v > 0)]
        if bad:
            raise ModelInputError(
                f"{cls.__name__}: params {', '.join(bad)} must be positive numbers"
            )
        model = cls(**data.get("hyperparams", {}))
        model.params_ = {k: params[k] for k in cls._param_names}
        model.n_customers_ = data["n_customers"]
        model.log_likelihood_ = float(data["log_likelihood"])
        return model

    def _set_fit(self, params: FloatArray, loglik: float, n: float) -> None:
        self.params_ = {k: float(v) for k, v in zip(self._param_names, params, strict=True)}
        self.log_likelihood_ = loglik
        self.n_customers_ = int(n) if float(n).is_integer() else float(n)


class _TransactionModel(_Model):
    """What BG/NBD and Pareto/NBD share: fitting on frequency, recency and T."""

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> FloatArray:
        raise NotImplementedError

    def _objective(
        self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray
    ) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        raise NotImplementedError

    def fit(
        self,
        frequency: Columns,
        recency: npt.ArrayLike | None = None,
        T: npt.ArrayLike | None = None,
        *,
        weights: npt.ArrayLike | None = None,
    ) -> Self:
        """Maximum-likelihood fit on repeat-purchase counts, recency and age (same time unit).

        ``frequency`` may be a DataFrame with columns frequency, recency and T (such as
        ``rfm_summary`` output). ``weights`` counts customers per row. Identical rows are merged
        before fitting, so the cost grows with the number of distinct histories, not customers.
        """
        self._check_hyperparams()
        x, tx, age = (a.ravel() for a in _rfm(frequency, recency, T))
        w = _weights(weights, x.size)
        name = type(self).__name__
        _enough(float(w.sum()), name)
        if not np.any(x > 0):
            raise ModelInputError(
                f"frequency: every value is 0, no repeat purchases to fit {name} on"
            )
        if not np.any(age > 0):
            raise ModelInputError(
                f"T: every value is 0, the customers have no history to fit {name}"
            )
        (x, tx, age), w = _collapse({"x": x, "tx": tx, "T": age}, w)
        # time rescaled so that the oldest customer has T = 1 (as lifetimes does): it keeps the
        # rate parameters near 1 whatever the unit, which the optimiser needs
        scale = 1.0 / float(age.max())
        # start from r = 1 and alpha matching the mean purchase rate (others at 1): from all-ones
        # a sample of heavy buyers sends the first line search to absurd rates
        start = np.zeros(len(self._param_names))
        start[1] = np.log(float(w @ age) * scale / float(w @ x))
        theta = _minimize(
            self._objective(x, tx * scale, age * scale, w),
            start,
            self.tol,
            int(self.max_iter),
            name,
        )
        params = np.exp(theta)
        for i, k in enumerate(self._param_names):
            if k in ("alpha", "beta"):
                params[i] /= scale
        loglik = float(np.dot(w, self._loglik(params, x, tx, age)))
        self._set_fit(params, loglik, float(w.sum()))
        return self

    def _penalty(self, theta: FloatArray) -> tuple[float, FloatArray]:
        p2 = np.exp(2 * theta)
        return self.penalizer_coef * float(p2.sum()), 2 * self.penalizer_coef * p2

    def conditional_probability_alive(
        self,
        frequency: Columns,
        recency: npt.ArrayLike | None = None,
        T: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Probability that each customer is still active at the end of their history."""
        x, tx, age = _rfm(frequency, recency, T)
        return self._p_alive(x, tx, age)

    def _p_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        raise NotImplementedError

    def log_likelihood(
        self,
        frequency: Columns,
        recency: npt.ArrayLike | None = None,
        T: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Log-likelihood of each customer's history under the fitted parameters."""
        x, tx, age = _rfm(frequency, recency, T)
        return self._loglik(np.asarray(self._params()), x, tx, age)


# ---------------------------------------------------------------------------- BG/NBD


def _bg_loglik(params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
    """Log-likelihood per row (FHL 2005, eq. 6, as in note 004 section 7)."""
    r, alpha, a, b = params
    base = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    alive = -(r + x) * np.log(alpha + T)
    # dropping out after the last purchase is only possible once there was a repeat purchase
    dead = np.where(
        x > 0,
        np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + tx),
        -np.inf,
    )
    return np.asarray(base + np.logaddexp(alive, dead))


class BetaGeo(_TransactionModel):
    """BG/NBD (Fader, Hardie & Lee 2005): Poisson purchases, drop-out after each purchase.

    Parameters ``r, alpha`` (gamma purchase rates) and ``a, b`` (beta drop-out probability).
    Hyperparameters: ``penalizer_coef`` (L2 on the parameters, time scaled to max T = 1, as in
    lifetimes), ``tol`` and ``max_iter`` of the optimiser.
    """

    _param_names = ("r", "alpha", "a", "b")

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> FloatArray:
        return _bg_loglik(params, x, tx, T)

    def _objective(
        self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray
    ) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        total = float(w.sum())
        xm1 = np.maximum(x, 1) - 1
        pos = x > 0
        # the same sum as _bg_loglik, with its gradient; the gamma-function terms depend on x
        # alone, so they are summed once per distinct count
        xs, inverse = np.unique(x, return_inverse=True)
        ws = np.bincount(inverse, weights=w)

        def fun(theta: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(theta)
            r, alpha, a, b = params
            base = ws @ (
                special.gammaln(r + xs)
                + special.gammaln(b + xs)
                - special.gammaln(a + b + xs)
                + special.gammaln(a + b)
                - special.gammaln(r)
                - special.gammaln(b)
                + r * np.log(alpha)
            )
            log_T, log_tx = np.log(alpha + T), np.log(alpha + tx)
            alive = -(r + x) * log_T
            dead = np.where(pos, np.log(a) - np.log(b + xm1) - (r + x) * log_tx, -np.inf)
            mix = np.logaddexp(alive, dead)
            d = np.exp(dead - mix)  # share of the "dropped out at t_x" branch
            psi_ab, psi_abx = special.digamma(a + b), special.digamma(a + b + xs)
            grad = np.array(
                [
                    ws @ (special.digamma(r + xs) - special.digamma(r) + np.log(alpha))
                    - w @ ((1 - d) * log_T + d * log_tx),
                    total * r / alpha - w @ ((r + x) * ((1 - d) / (alpha + T) + d / (alpha + tx))),
                    ws @ (psi_ab - psi_abx) + (w @ d) / a,
                    ws @ (psi_ab + special.digamma(b + xs) - special.digamma(b) - psi_abx)
                    - w @ (d / (b + xm1)),
                ]
            )
            pen, pen_grad = self._penalty(theta)
            return -(base + w @ mix) / total + pen, -grad * params / total + pen_grad

        return fun

    def _p_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, a, b = self._params()
        # log odds of "dropped out" against "alive", in logs: ((alpha+T)/(alpha+t_x))^(r+x)
        # overflows for heavy buyers who have been away long
        log_odds = (
            np.log(a)
            - np.log(b + np.maximum(x, 1) - 1)
            + (r + x) * np.log((alpha + T) / (alpha + tx))
        )
        # without a repeat purchase one cannot have dropped out
        return np.where(x > 0, special.expit(-log_odds), 1.0)

    def conditional_expected_number_of_purchases_up_to_time(
        self,
        t: npt.ArrayLike,
        frequency: Columns,
        recency: npt.ArrayLike | None = None,
        T: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Expected repeat purchases in the next ``t`` time units of each customer (FHL eq. 10)."""
        r, alpha, a, b = self._params()
        x, tx, age = _rfm(frequency, recency, T)
        t = _horizon(t)

        def future(u: FloatArray, ages: FloatArray) -> FloatArray:
            z = t / (alpha + ages + t)
            # Euler's transformation of 2F1(r+x, b+x; a+b+x-1; z) (1-z)^(r+x): the same value
            # with parameters that do not grow with x, so it neither overflows nor loses
            # precision for heavy buyers (lifetimes falls back to it only once the first is inf)
            hyp = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(
                a + b - 1 - r, a - 1, a + b - 1 + u, z
            )
            return np.asarray((a + b + u - 1) / (a - 1) * (1 - hyp))

        # with one horizon, 2F1 once per distinct (x, T)
        expected = _Pairs(x, age).apply(future) if np.ndim(t) == 0 else future(x, age)
        return np.asarray(expected * self._p_alive(x, tx, age), dtype=np.float64)

    def sample(
        self, T: npt.ArrayLike, *, random_state: int | np.random.Generator | None = None
    ) -> pd.DataFrame:
        """Simulated histories (frequency, recency, T) of customers of ages ``T``."""
        r, alpha, a, b = self._params()
        age, rng = _ages(T), np.random.default_rng(random_state)
        lam = rng.gamma(r, 1 / alpha, age.size)
        # repeat purchases made before dropping out: geometric on 1, 2, ... (drop-out is only
        # possible after a repeat purchase, never at the first one)
        last = rng.geometric(rng.beta(a, b, age.size))
        n = rng.poisson(lam * age)
        return _histories(np.minimum(n, last), n, age, age, rng)

    def expected_number_of_purchases_up_to_time(self, t: npt.ArrayLike) -> FloatArray:
        """Expected repeat purchases in ``t`` time units of a new customer (FHL eq. 9)."""
        r, alpha, a, b = self._params()
        t = _horizon(t)
        z = t / (alpha + t)
        hyp = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - 1 - r, a - 1, a + b - 1, z)
        return np.asarray((a + b - 1) / (a - 1) * (1 - hyp), dtype=np.float64)


# ---------------------------------------------------------------------------- Pareto/NBD


def _pareto_ratio(params: FloatArray, x: FloatArray, tau: FloatArray) -> FloatArray:
    """F(tau) / K(tau), where (s/(r+s+x)) (F(t_x) - F(T)) is the "died in (t_x, T]" term.

    Fader & Hardie (2005, note 009, eq. 19-20) write F with 2F1(r+s+x, .; r+s+x+1; z), which
    grows without bound as z -> 1 and with x. Euler's transformation leaves 2F1(1, b; c; z) with
    0 <= z < 1 and c > b, which ``_hyp2f1_one`` evaluates reliably.
    """
    r, alpha, s, beta = params
    c = r + s + x + 1
    if alpha >= beta:
        return _hyp2f1_one(r + x, c, (alpha - beta) / (alpha + tau))
    z = (beta - alpha) / (beta + tau)
    return np.asarray((alpha + tau) / (beta + tau) * _hyp2f1_one(s + 1, c, z))


# scipy's 2F1 is exact to ~1e-14 up to here (its power series); above, it switches to the
# 1 - z transformation, which returns inf/NaN or loses digits when c - a - b is near an integer
# or b is large (2F1(1, 2; 103; 0.95) = inf in scipy 1.17): measured against direct summation
_SERIES_MAX_Z = 0.9
# the continued fraction needs ~1/sqrt(1 - z) steps; 5000 covers z < 1 - 1e-6 (parameters a
# million times apart), beyond which the last approximant is returned
_CF_MAX_STEPS = 5000


def _hyp2f1_one(b: FloatArray | float, c: FloatArray, z: FloatArray) -> FloatArray:
    """2F1(1, b; c; z) for 0 <= z < 1 and c > b > 0: scipy below z = 0.9, else Gauss's fraction.

    Above 0.9 it evaluates Gauss's continued fraction for 2F1(b, 1; c; z) / 2F1(b, 0; c - 1; z)
    (a Stieltjes fraction with positive coefficients, so it converges for every z < 1) with the
    modified Lentz method, vectorised over rows, dropping rows as they converge.
    """
    shape = np.broadcast(b, c, z).shape
    b, c, z = (np.ravel(a) for a in np.broadcast_arrays(np.asarray(b, np.float64), c, z))
    out = np.asarray(special.hyp2f1(1.0, b, c, z), dtype=np.float64)
    far = np.flatnonzero(z > _SERIES_MAX_Z)
    if far.size:
        _gauss_fraction(out, far, b[far], c[far], z[far])
    return out.reshape(shape)


def _gauss_fraction(
    out: FloatArray, far: npt.NDArray[np.intp], b: FloatArray, c: FloatArray, z: FloatArray
) -> None:
    """Writes 2F1(1, b; c; z) into ``out[far]`` by the continued fraction (see above).

    Lentz on q = 1 - k1 z / (1 - k2 z / (1 - ...)), and 2F1 = 1 / q.
    """
    tiny = 1e-300
    q, num, den = np.ones_like(z), np.ones_like(z), np.zeros_like(z)
    for n in range(1, _CF_MAX_STEPS):
        j = n // 2
        if n % 2:  # k_{2j+1} = (b + j)(c - 1 + j) / ((c - 1 + 2j)(c + 2j))
            k = (b + j) * (c - 1 + j) / ((c - 1 + 2 * j) * (c + 2 * j))
        else:  # k_{2j} = j (c - 1 - b + j) / ((c - 2 + 2j)(c - 1 + 2j))
            k = j * (c - 1 - b + j) / ((c - 2 + 2 * j) * (c - 1 + 2 * j))
        step = -k * z
        den = 1.0 + step * den
        den = 1.0 / np.where(den == 0, tiny, den)
        num = 1.0 + step / num
        num = np.where(num == 0, tiny, num)
        delta = num * den
        q *= delta
        done = np.abs(delta - 1.0) < 1e-15
        if done.any():
            out[far[done]] = 1.0 / q[done]
            keep = ~done
            far = far[keep]
            b, c, z, q, num, den = (v[keep] for v in (b, c, z, q, num, den))
            if far.size == 0:
                return
    out[far] = 1.0 / q


class _Pairs:
    """The distinct (x, tau) pairs of some rows, so that 2F1 (~0.5 us a value) is evaluated once
    per pair: counts are small integers and times whole days, so 1M customers have a few
    thousand pairs."""

    def __init__(self, x: FloatArray, tau: FloatArray) -> None:
        # a complex number holds both floats exactly, and pandas hashes it fast
        codes, uniq = pd.factorize(np.ravel(x + 1j * tau))
        self.shape = np.shape(x)
        self.codes = codes
        self.x, self.tau = np.ascontiguousarray(uniq.real), np.ascontiguousarray(uniq.imag)

    def apply(self, fn: Callable[[FloatArray, FloatArray], FloatArray]) -> FloatArray:
        return np.asarray(fn(self.x, self.tau))[self.codes].reshape(self.shape)


def _pareto_terms(
    params: FloatArray,
    x: FloatArray,
    tx: FloatArray,
    T: FloatArray,
    pairs: tuple[_Pairs, _Pairs] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per row: the log-likelihood (note 009 eq. 18) and the log of its "alive at T" part."""
    r, alpha, s, beta = params
    q = s / (r + s + x)
    log_c = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    log_k_T = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    log_k_tx = -(r + x) * np.log(alpha + tx) - s * np.log(beta + tx)
    # L = C [K(T) (1 - q R(T)) + q K(t_x) R(t_x)]: both terms are >= 0, so the difference of
    # hypergeometric terms in the published form never cancels catastrophically here
    # (q R(T) <= 1 because q F(T) is the "dies after T" mass, at most K(T))
    at_T, at_tx = pairs or (_Pairs(x, T), _Pairs(x, tx))
    ratio_T = at_T.apply(lambda u, tau: _pareto_ratio(params, u, tau))
    ratio_tx = at_tx.apply(lambda u, tau: _pareto_ratio(params, u, tau))
    keep = np.maximum(1 - q * ratio_T, 0.0)
    with np.errstate(divide="ignore"):
        alive = log_k_T + np.log(keep)
    died = np.log(q) + np.log(ratio_tx) + log_k_tx
    return log_c + np.logaddexp(alive, died), log_c + log_k_T


class ParetoNBD(_TransactionModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases, exponential lifetime.

    Parameters ``r, alpha`` (gamma purchase rates) and ``s, beta`` (gamma drop-out rates).
    Hyperparameters as for ``BetaGeo``. The gradient is taken by central differences: the
    likelihood's derivatives need those of 2F1 in its parameters.
    """

    _param_names = ("r", "alpha", "s", "beta")

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray
    ) -> FloatArray:
        return _pareto_terms(params, x, tx, T)[0]

    def _objective(
        self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray
    ) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        total = float(w.sum())
        pairs = (_Pairs(x, T), _Pairs(x, tx))

        def f(theta: FloatArray) -> float:
            pen, _ = self._penalty(theta)
            return -float(w @ _pareto_terms(np.exp(theta), x, tx, T, pairs)[0]) / total + pen

        return _central_gradient(f)

    def _p_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        # eq. 36
        ll, alive = _pareto_terms(np.asarray(self._params()), x, tx, T)
        return np.exp(alive - ll)

    def conditional_expected_number_of_purchases_up_to_time(
        self,
        t: npt.ArrayLike,
        frequency: Columns,
        recency: npt.ArrayLike | None = None,
        T: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Expected repeat purchases in the next ``t`` time units of each customer (eq. 41)."""
        r, alpha, s, beta = self._params()
        x, tx, age = _rfm(frequency, recency, T)
        t = _horizon(t)
        p_alive = self._p_alive(x, tx, age)
        rate = (r + x) / (alpha + age) * (beta + age)
        return np.asarray(p_alive * rate * _pow_integral(s - 1, np.log1p(t / (beta + age))))

    def sample(
        self, T: npt.ArrayLike, *, random_state: int | np.random.Generator | None = None
    ) -> pd.DataFrame:
        """Simulated histories (frequency, recency, T) of customers of ages ``T``."""
        r, alpha, s, beta = self._params()
        age, rng = _ages(T), np.random.default_rng(random_state)
        lam = rng.gamma(r, 1 / alpha, age.size)
        active = np.minimum(rng.exponential(1 / rng.gamma(s, 1 / beta, age.size)), age)
        n = rng.poisson(lam * active)
        return _histories(n, n, active, age, rng)

    def expected_number_of_purchases_up_to_time(self, t: npt.ArrayLike) -> FloatArray:
        """Expected repeat purchases in ``t`` time units of a new customer (eq. 27)."""
        r, alpha, s, beta = self._params()
        t = _horizon(t)
        return np.asarray(r * beta / alpha * _pow_integral(s - 1, np.log1p(t / beta)))


def _ages(T: npt.ArrayLike) -> FloatArray:
    age = _as_float(T, "T").ravel()
    _raise_if(age < 0, "T", "negative")
    return age


def _histories(
    x: npt.NDArray[np.int64],
    n: npt.NDArray[np.int64],
    span: FloatArray,
    age: FloatArray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Histories from x kept purchases out of n Poisson events over [0, span]: the x-th event
    time is the x-th order statistic of n uniforms, span * Beta(x, n - x + 1)."""
    tx = np.where(x > 0, span * rng.beta(np.maximum(x, 1), np.maximum(n - x + 1, 1)), 0.0)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": age})


def _pow_integral(e: float, u: FloatArray) -> FloatArray:
    """(1 - exp(-e u)) / e, equal to u at e = 0 (the s = 1 case of the Pareto/NBD)."""
    if e == 0:
        return u
    return np.asarray(-np.expm1(-e * u) / e)


def _horizon(t: npt.ArrayLike) -> FloatArray:
    arr = _as_float(t, "t")
    _raise_if(arr < 0, "t", "negative")
    return arr


# ---------------------------------------------------------------------------- Gamma-Gamma


def _gg_loglik(params: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
    p, q, g = params
    px = p * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + x * m)
    )


class GammaGamma(_Model):
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005; Fader & Hardie note 025).

    Parameters ``p, q, gamma``: a customer's spend per transaction is gamma(p, nu) with
    nu ~ gamma(q, gamma). ``monetary_value`` is the mean value of the customer's *repeat*
    transactions (same-day purchases summed), which is what reproduces the published CDNOW
    figures and what ``rfm_summary`` returns.
    """

    _param_names = ("p", "q", "gamma")

    def fit(
        self,
        frequency: Columns,
        monetary_value: npt.ArrayLike | None = None,
        *,
        weights: npt.ArrayLike | None = None,
    ) -> Self:
        """Maximum-likelihood fit on the customers with ``frequency > 0`` (the others are skipped:
        they have no repeat spend). ``frequency`` may be a DataFrame with both columns."""
        self._check_hyperparams()
        x, m = (a.ravel() for a in _spend(frequency, monetary_value))
        w = _weights(weights, x.size)
        keep = x > 0
        x, m, w = x[keep], m[keep], w[keep]
        _enough(float(w.sum()), "GammaGamma (customers with frequency > 0)")
        (x, m), w = _collapse({"x": x, "m": m}, w)
        total = float(w.sum())
        # only log(gamma + x m) needs every row at each step: the rest is per distinct x, or
        # sums fixed before the search starts
        xs, inverse = np.unique(x, return_inverse=True)
        ws = np.bincount(inverse, weights=w)
        wx, log_m = w * x, np.log(m)
        sum_wxlogm, sum_wlogm = float(wx @ log_m), float(w @ log_m)

        def fun(theta: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(theta)
            p, q, g = params
            pxs = p * xs
            log_gm = np.log(g + x * m)
            ll = (
                ws
                @ (
                    special.gammaln(pxs + q)
                    - special.gammaln(pxs)
                    - special.gammaln(q)
                    + q * np.log(g)
                    + pxs * np.log(xs)
                )
                + p * sum_wxlogm
                - sum_wlogm
                - p * (wx @ log_gm)
                - q * (w @ log_gm)
            )
            psi = special.digamma(pxs + q)
            grad = np.array(
                [
                    ws @ (xs * (psi - special.digamma(pxs) + np.log(xs)))
                    + sum_wxlogm
                    - wx @ log_gm,
                    ws @ (psi - special.digamma(q) + np.log(g)) - w @ log_gm,
                    total * q / g - w @ ((p * x + q) / (g + x * m)),
                ]
            )
            p2 = params**2
            pen = self.penalizer_coef * float(p2.sum())
            return -ll / total + pen, -grad * params / total + 2 * self.penalizer_coef * p2

        # start at gamma = mean spend, so the optimiser begins on the right money scale
        x0 = np.array([0.0, np.log(2.0), np.log(float(np.average(m, weights=w)))])
        params = np.exp(_minimize(fun, x0, self.tol, int(self.max_iter), "GammaGamma"))
        self._set_fit(params, float(w @ _gg_loglik(params, x, m)), total)
        return self

    def conditional_expected_average_profit(
        self, frequency: Columns, monetary_value: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Expected spend per future transaction of each customer (note 025, eq. 5).

        A weighted mean of the customer's own mean spend and the population mean
        ``p gamma / (q - 1)`` (only finite for q > 1); customers with frequency 0 get the latter.
        """
        p, q, g = self._params()
        x, m = _spend(frequency, monetary_value)
        own = p * x / (p * x + q - 1)
        return np.asarray((1 - own) * (p * g / (q - 1)) + own * m)

    def sample(
        self, frequency: npt.ArrayLike, *, random_state: int | np.random.Generator | None = None
    ) -> FloatArray:
        """Simulated mean spend of customers with ``frequency`` repeat purchases (0 when none)."""
        p, q, g = self._params()
        x = _as_float(frequency, "frequency").ravel()
        _raise_if(x < 0, "frequency", "negative")
        rng = np.random.default_rng(random_state)
        nu = rng.gamma(q, 1 / g, x.size)
        # the mean of x gamma(p, nu) spends is gamma(p x, x nu)
        ones = np.maximum(x, 1)
        return np.where(x > 0, rng.gamma(p * ones, 1 / (ones * nu)), 0.0)

    def log_likelihood(
        self, frequency: Columns, monetary_value: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Log-likelihood of each repeat buyer's mean spend (rows with frequency 0 give NaN)."""
        x, m = _spend(frequency, monetary_value)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, _gg_loglik(np.asarray(self._params()), x, m), np.nan)


def _spend(
    frequency: Columns, monetary_value: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray]:
    x, m = _from_frame(frequency, (monetary_value,), ("frequency", "monetary_value"))
    _raise_if(x < 0, "frequency", "negative")
    _raise_if(x != np.floor(x), "frequency", "not whole numbers (repeat purchase counts)")
    _raise_if((x > 0) & (m <= 0), "monetary_value", "not positive where frequency > 0")
    return x, m


# ---------------------------------------------------------------------------- lifetime value


def customer_lifetime_value(
    transaction_model: BetaGeo | ParetoNBD,
    spend_model: GammaGamma,
    frequency: Columns,
    recency: npt.ArrayLike | None = None,
    T: npt.ArrayLike | None = None,
    monetary_value: npt.ArrayLike | None = None,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    unit_days: float = 7.0,
    periods_per_month: float | None = None,
    continuous: bool = False,
) -> FloatArray:
    """Discounted expected spend of each customer over the next ``months`` months.

    Expected purchases come from ``transaction_model`` (fitted in time units of ``unit_days``
    days), spend per purchase from ``spend_model.conditional_expected_average_profit``.

    By default (as lifetimes' ``customer_lifetime_value``) month i's expected purchases are
    discounted by ``(1 + monthly_discount_rate) ** i``. ``periods_per_month`` defaults to
    365.25 / 12 / unit_days; lifetimes uses 4.345 weeks (or 30 days). ``continuous=True``
    discounts every purchase at the instant it is expected, at the equivalent continuous rate
    (integrated by 8-point Gauss-Legendre per month).
    """
    names = ("frequency", "recency", "T", "monetary_value")
    x, tx, age, m = _from_frame(frequency, (recency, T, monetary_value), names)
    purchases = discounted_expected_purchases(
        transaction_model,
        x,
        tx,
        age,
        months=months,
        monthly_discount_rate=monthly_discount_rate,
        unit_days=unit_days,
        periods_per_month=periods_per_month,
        continuous=continuous,
    )
    return np.asarray(spend_model.conditional_expected_average_profit(x, m) * purchases)


def discounted_expected_purchases(
    transaction_model: BetaGeo | ParetoNBD,
    frequency: Columns,
    recency: npt.ArrayLike | None = None,
    T: npt.ArrayLike | None = None,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    unit_days: float = 7.0,
    periods_per_month: float | None = None,
    continuous: bool = False,
) -> FloatArray:
    """Each customer's expected purchases over the next ``months`` months, discounted as in
    ``customer_lifetime_value`` (which multiplies them by the expected spend per purchase).

    Kept apart so a caller can price the purchases with a spend of its own choosing, e.g. the
    population mean for customers the spend model was not fitted on.
    """
    x, tx, age = _from_frame(frequency, (recency, T), ("frequency", "recency", "T"))
    if int(months) != months or months < 1:
        raise ModelInputError(f"months must be a positive integer, got {months}")
    if not monthly_discount_rate > -1:
        raise ModelInputError(f"monthly_discount_rate must be > -1, got {monthly_discount_rate}")
    if not unit_days > 0:
        raise ModelInputError(f"unit_days must be positive, got {unit_days}")
    per_month = 365.25 / 12 / unit_days if periods_per_month is None else periods_per_month
    if not per_month > 0:
        raise ModelInputError(f"periods_per_month must be positive, got {per_month}")

    def expected(month: float) -> FloatArray:
        return transaction_model.conditional_expected_number_of_purchases_up_to_time(
            month * per_month, x, tx, age
        )

    total = np.zeros(np.shape(x))
    if not continuous:
        before = np.zeros(np.shape(x))
        for i in range(1, int(months) + 1):
            now = expected(float(i))
            total += (now - before) / (1 + monthly_discount_rate) ** i
            before = now
        return total
    # integral of e^(-d u) dE(u) over [0, H] = e^(-d H) E(H) + d * integral of e^(-d u) E(u) du
    rate = float(np.log1p(monthly_discount_rate))
    nodes, wts = np.polynomial.legendre.leggauss(8)
    for i in range(int(months)):
        for node, wt in zip((nodes + 1) / 2 + i, wts / 2, strict=True):
            total += rate * wt * np.exp(-rate * node) * expected(float(node))
    total += np.exp(-rate * months) * expected(float(months))
    return total


_MODELS: dict[str, type[_Model]] = {m.__name__: m for m in (BetaGeo, ParetoNBD, GammaGamma)}


def model_from_dict(data: Mapping[str, Any]) -> BetaGeo | ParetoNBD | GammaGamma:
    """Any of the three models from its ``to_dict`` output, by the ``model`` name it records."""
    cls = _MODELS.get(str(data.get("model")))
    if cls is None:
        raise ModelInputError(f"unknown model {data.get('model')!r}; known: {', '.join(_MODELS)}")
    return cls.from_dict(data)
