"""Bundled demo data that needs no network.

- :func:`leads`: a generator of realistic B2B sales leads for several tenants
  whose ``converted`` label has different drivers per tenant;
- :func:`titanic`: the 891-row Titanic passengers table (see ``SOURCE.md``).
"""
from .bundled import titanic
from .synthetic import TENANTS, leads

__all__ = ["leads", "titanic", "TENANTS"]
