"""Label sets and class-name normalisation.

FER2013 and its many re-distributions spell the same emotion in different ways
(``anger`` / ``angry`` / ``Angry``, ``happiness`` / ``happy`` ...).  Every place
that reads class names from a dataset goes through :func:`normalise_label`, so a
model trained on one spelling predicts the canonical one.
"""

from __future__ import annotations

FER2013_LABELS: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprise",
)
"""The seven FER2013 classes in alphabetical order: the order of the Kaggle folder layout and of
the bundled model's outputs (the CSV uses another order: see FER2013_CSV_ORDER)."""

FER2013_CSV_ORDER: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
"""Class index -> name as used by the ``emotion`` column of the original fer2013.csv."""

_SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "contempt": "contempt",
    "afraid": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "smile": "happy",
    "smiling": "happy",
    "calm": "neutral",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
}


def normalise_label(name: str) -> str:
    """Return the canonical spelling of an emotion class name.

    Lower-cases, strips whitespace and maps common synonyms
    (``anger``→``angry``, ``happiness``→``happy``, ``sadness``→``sad``,
    ``surprised``→``surprise``, ``fearful``→``fear``, ``disgusted``→``disgust``).
    Unknown names are kept (lower-cased), so any custom label set works.

    >>> normalise_label(" Happiness ")
    'happy'
    >>> normalise_label("thinking")
    'thinking'
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return _SYNONYMS.get(key, key)
