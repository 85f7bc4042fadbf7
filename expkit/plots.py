"""Deprecated: the figures moved to :mod:`expkit.models.plots` (this alias goes in the next release)."""
import warnings

from .models.plots import *  # noqa: F401,F403
from .models.plots import __all__  # noqa: F401

warnings.warn("expkit.plots moved to expkit.models.plots; the old name will be removed in the next "
              "release", DeprecationWarning, stacklevel=2)
