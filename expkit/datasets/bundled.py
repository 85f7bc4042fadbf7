"""Tables shipped with expkit: the Titanic passengers (see ``SOURCE.md``)."""
from __future__ import annotations

from importlib import resources

import pandas as pd


def titanic() -> pd.DataFrame:
    """The Titanic passengers table (891 rows; target ``Survived``).

    Bundled with expkit from Salesforce TransmogrifAI's test data (BSD-3-Clause);
    see ``expkit/datasets/SOURCE.md`` for the exact origin.

    Returns
    -------
    pandas.DataFrame
        PassengerId, Survived, Pclass, Name, Sex, Age, SibSp, Parch, Ticket,
        Fare, Cabin, Embarked.
    """
    with resources.as_file(resources.files(__package__) / "titanic.csv") as path:
        return pd.read_csv(path)
