"""What every segone model shares with scikit-learn's estimators: the fitted check.

``get_params``, ``set_params``, ``repr`` and ``clone`` come with ``sklearn.base.BaseEstimator``;
``require_fitted`` is ``check_is_fitted`` raising segone's ``NotFittedError`` (which is also
scikit-learn's), so that callers catch either.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from segone.exceptions import NotFittedError


def require_fitted(model: BaseEstimator, attribute: str, how: str = "fit(...)") -> None:
    """Raise ``NotFittedError`` unless ``model`` has its learnt ``attribute``."""
    try:
        check_is_fitted(model, attribute)
    except SklearnNotFittedError:
        raise NotFittedError(
            f"this {type(model).__name__} is not fitted yet: call {how} first"
        ) from None
