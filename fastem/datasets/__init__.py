"""Small real datasets shipped with fastem (for the CLI's default job and examples)."""

import os

import numpy as np

_HERE = os.path.dirname(__file__)


def load_iris():
    """Fisher's iris measurements (1936): 150 x 4 float64 and the four feature names.

    Sepal length, sepal width, petal length and petal width in cm of 50 flowers of each
    of three species (the species column is not included: it is what clustering finds).
    """
    path = os.path.join(_HERE, "iris.csv")
    with open(path) as fh:
        names = fh.readline().strip().split(",")
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64), names
