"""oneclass: deep one-class novelty detection (LSA, ALOCC, OLED, attention+entropy AE, baselines).

    import oneclass
    det = oneclass.create("dae", preset="mnist", epochs=20, seed=0, device="auto")
    det.fit(x_train); det.score_samples(x)
"""
__version__ = "0.1.0"

from . import data as datasets  # noqa: E402
from . import metrics, protocols, video  # noqa: E402
from .detector import Detector, load  # noqa: E402
from .errors import DataError, ModelFileError, NotFittedError, OneClassError, UndertrainingWarning  # noqa: E402
from .registry import create, methods, register  # noqa: E402

__all__ = ["create", "load", "methods", "register", "datasets", "metrics", "protocols", "video", "Detector",
           "OneClassError", "DataError", "ModelFileError", "NotFittedError", "UndertrainingWarning",
           "__version__"]
