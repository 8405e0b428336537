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
    # angry
    "anger": "angry", "angered": "angry", "mad": "angry", "furious": "angry", "rage": "angry",
    # disgust
    "disgusted": "disgust", "disgusting": "disgust",
    # fear
    "afraid": "fear", "fearful": "fear", "fearfull": "fear", "scared": "fear", "terrified": "fear",
    # happy
    "happiness": "happy", "joy": "happy", "joyful": "happy", "smile": "happy", "smiling": "happy",
    "laugh": "happy", "laughing": "happy",
    # neutral
    "calm": "neutral", "neutrality": "neutral", "natural": "neutral",
    # sad
    "sadness": "sad", "unhappy": "sad", "sorrow": "sad", "crying": "sad",
    # surprise
    "surprised": "surprise", "suprise": "surprise", "shocked": "surprise", "astonished": "surprise",
    "amazed": "surprise",
}
"""Known spellings -> canonical class name (keys are lower-case, spaces and dashes as ``_``)."""


def normalise_label(name: str) -> str:
    """Return the canonical spelling of an emotion class name.

    Lower-cases, turns spaces/dashes into ``_`` and maps common synonyms
    (``anger``→``angry``, ``happiness``→``happy``, ``sadness``→``sad``,
    ``surprised``→``surprise``, ``fearful``→``fear``, ``disgusted``→``disgust``; see ``_SYNONYMS``).
    A FER2013 class name with a numeric prefix or a plural ``s`` is recognised too
    (``0_angry``, ``3 - happy``, ``Angrys``). Other names are kept (lower-cased, ``_``-joined),
    so any custom label set works. A name with a control character (an escape sequence in a folder's name)
    raises ValueError: model labels must be printable (:mod:`emolens.modelmeta`).

    >>> normalise_label(" Happiness ")
    'happy'
    >>> normalise_label("3 - Happy")
    'happy'
    >>> normalise_label("thinking")
    'thinking'
    """
    if not name.isprintable():  # a label reaches terminals: an escape sequence in a folder's name must not
        raise ValueError(f"class name {name!r} has a control or other non-printable character; rename it")
    key = "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    # "0_angry", "3 - happy", "happy_faces": a FER class name plus a number or a plural/suffix
    parts = [p for p in key.split("_") if p and not p.isdigit()]
    if len(parts) == 1:
        word = parts[0]
        for cand in (word, word[:-1] if word.endswith("s") else word):
            if cand in _SYNONYMS:
                return _SYNONYMS[cand]
            if cand in FER2013_LABELS:
                return cand
    return key
