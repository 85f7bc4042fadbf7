"""A transformer type expkit does not trust by default (for the trust_types test)."""
from sklearn.base import BaseEstimator, TransformerMixin


class Passthrough(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X
