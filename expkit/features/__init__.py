"""Automatic feature engineering: per-type vectorizers assembled by the
:class:`Transmogrifier`, leakage and variance checks by the
:class:`SanityChecker`, both in one :class:`Featurizer`."""
from .categorical import CategoricalVectorizer
from .contact import EmailVectorizer, PhoneVectorizer, UrlVectorizer
from .dates import DateVectorizer
from .featurizer import Featurizer
from .numeric import NumericVectorizer
from .sanity import SanityChecker
from .text import TextVectorizer
from .transmogrify import Transmogrifier

__all__ = [
    "Transmogrifier", "SanityChecker", "Featurizer",
    "NumericVectorizer", "CategoricalVectorizer", "TextVectorizer",
    "EmailVectorizer", "UrlVectorizer", "PhoneVectorizer", "DateVectorizer",
]
