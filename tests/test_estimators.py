"""segone's models are scikit-learn estimators: cloneable, with the fitted check of the base
class raising segone's NotFittedError (which scikit-learn code also catches)."""

from __future__ import annotations

import pytest
import sklearn.base
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from segone.exceptions import ModelInputError, NotFittedError
from segone.models.btyd import BetaGeo, GammaGamma, ParetoNBD
from segone.models.churn import ChurnModel


@pytest.mark.parametrize(
    "model",
    [
        BetaGeo(tol=1e-9),
        ParetoNBD(max_iter=50),
        GammaGamma(penalizer_coef=0.5),
        ChurnModel(max_iter=7),
    ],
    ids=lambda m: type(m).__name__,
)
def test_models_clone_and_say_when_unfitted(model: sklearn.base.BaseEstimator) -> None:
    twin = sklearn.base.clone(model)
    assert type(twin) is type(model) and twin.get_params() == model.get_params()
    assert twin.set_params(random_state=3) is twin if isinstance(twin, ChurnModel) else True
    with pytest.raises(NotFittedError, match="not fitted yet") as caught:
        if isinstance(model, ChurnModel):
            import pandas as pd

            model.predict_proba(pd.DataFrame({"orders": [1]}))
        else:
            model.to_dict()
    assert isinstance(caught.value, SklearnNotFittedError)


def test_an_unknown_hyperparameter_is_a_model_input_error() -> None:
    with pytest.raises(ModelInputError, match="no hyperparameter 'alpha'"):
        BetaGeo().set_params(alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        ChurnModel().set_params(alpha=1.0)
