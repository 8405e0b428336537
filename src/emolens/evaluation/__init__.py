"""Evaluation on ONNX models (numpy, scikit-learn, matplotlib; no torch): scores (`metrics.py`), calibration
(`calibration.py`), the report and its figures (`report.py`, `plots.py`), runs side by side (`compare.py`).

    from emolens.evaluation import evaluate
    ev = evaluate("runs/happy-sad", "data/faces", "test")     # report.json, report.md and PNGs in RUN/eval-test
"""

from .report import ReportWriteError, evaluate

__all__ = ["ReportWriteError", "evaluate"]
