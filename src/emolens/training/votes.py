"""Vote labels: what several annotators chose for each face, as a training target and as an evaluation truth.

A votes CSV has a ``file`` column and one column per label with the number of annotators who chose it::

    file,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
    train/angry/Training_10118481.jpg,2,0,0,1,7,0,0,0,0,0

- ``file`` is the image's path: relative to the CSV's folder (FER+'s ``ferplus.csv`` sits beside ``train/`` and
  ``val/``), relative to the dataset folder, or absolute. Paths are compared after symbolic links are resolved.
- Label columns are normalised as class folders are (``happiness`` -> ``happy``, ``anger`` -> ``angry`` ...).
  Counts are numbers >= 0; they need not be whole (shares, or a teacher's probabilities, work too).
- An optional ``weight`` column weighs each face in the training loss (default 1).

Columns that are not among the model's labels (FER+'s ``contempt``, ``unknown`` and ``NF``, "not a face", for a
model of FER2013's seven emotions):

- **training**: their votes are dropped and the rest renormalised, so a face with 7 anger and 3 contempt votes
  trains as pure anger; a face with votes only there (all "unknown" or "not a face") is left out of training;
  a face the CSV has no row for trains on its folder's label alone. Both are counted in the log.
- **evaluation** (:func:`Votes.majority`): the majority is taken over *every* column, so a face most people
  called contempt, unknown or not-a-face is left out (it has no right answer among the labels), as is a face
  whose top vote is a tie. The report counts each reason.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import normalise_label

FILE_COLUMN = "file"
WEIGHT_COLUMN = "weight"


class VotesError(ValueError):
    """A votes CSV that cannot be used; the message is one line that names the file (and row)."""


@dataclass
class Votes:
    """The rows of a votes CSV: label columns (normalised names, in the file's order), counts, weights."""

    path: Path
    columns: list[str]
    counts: np.ndarray  # float64 rows × columns
    weights: np.ndarray  # float64 per row (1 where the CSV has no weight column)
    keys: list[str]  # each row's image path, resolved
    has_weights: bool = False

    def __post_init__(self) -> None:
        self._row = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def rows_of(self, files: Sequence[str]) -> np.ndarray:
        """The CSV row of each image file (-1 where it has none)."""
        return np.array([self._row.get(_key(f), -1) for f in files], dtype=np.int64)

    def ignored_columns(self, labels: Sequence[str]) -> list[str]:
        """The columns that are not among ``labels`` (their votes never count toward a label)."""
        return [c for c in self.columns if c not in labels]

    def targets(self, files: Sequence[str], folder_labels: np.ndarray, labels: Sequence[str], *,
                mix: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Soft training targets for images ``files`` whose folders say ``folder_labels`` (indices into ``labels``).

        The target is ``(1 - mix) * votes + mix * one-hot(folder label)``, the votes restricted to ``labels`` and
        renormalised. Returns (targets float32 N×K, weights float32 N, keep bool N, counts of what happened):
        faces without a row keep their folder label alone (``no_row``); faces whose votes all fall outside
        ``labels`` are not kept (``no_label_votes``)."""
        if not 0 <= mix <= 1:
            raise ValueError(f"votes_mix must be in [0, 1] (the folder label's share of the target), not {mix!r}")
        k = len(labels)
        onehot = np.eye(k, dtype=np.float64)[np.asarray(folder_labels, dtype=np.int64)]
        rows = self.rows_of(files)
        has = rows >= 0
        col_of = [self.columns.index(lab) if lab in self.columns else -1 for lab in labels]
        votes = np.zeros((len(files), k), dtype=np.float64)
        for j, c in enumerate(col_of):
            if c >= 0:
                votes[has, j] = self.counts[rows[has], c]
        total = votes.sum(1)
        usable = has & (total > 0)
        dist = np.divide(votes, total[:, None], out=onehot.copy(), where=usable[:, None])
        target = np.where(usable[:, None], (1 - mix) * dist + mix * onehot, onehot)
        weight = np.ones(len(files), dtype=np.float64)
        weight[has] = self.weights[rows[has]]
        keep = ~has | usable
        stats = {"rows": int(has.sum()), "no_row": int((~has).sum()), "no_label_votes": int((has & ~usable).sum())}
        return target.astype(np.float32), weight.astype(np.float32), keep, stats

    def majority(self, files: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
        """The majority label of each image (an index into ``labels``, -1 where it is left out) and how many were
        left out for each reason: ``no_row``, ``tie`` (two or more columns share the top count), and
        ``top_<column>`` (the top vote is a column that is not a label, e.g. ``top_contempt``)."""
        rows = self.rows_of(files)
        index = {lab: i for i, lab in enumerate(labels)}
        y = np.full(len(files), -1, dtype=np.int64)
        left: dict[str, int] = {}
        for i, r in enumerate(rows):
            if r < 0:
                left["no_row"] = left.get("no_row", 0) + 1
                continue
            c = self.counts[r]
            top = c.max()
            if top <= 0 or (c == top).sum() > 1:
                left["tie"] = left.get("tie", 0) + 1
                continue
            name = self.columns[int(c.argmax())]
            if name not in index:
                left[f"top_{name}"] = left.get(f"top_{name}", 0) + 1
                continue
            y[i] = index[name]
        return y, left


def _key(path: str | os.PathLike) -> str:
    return os.path.realpath(path)


def read_votes(path: str | os.PathLike, *, roots: Sequence[str | os.PathLike] = ()) -> Votes:
    """Read a votes CSV (see the module's docstring). A relative ``file`` is looked for under the CSV's folder,
    then under each of ``roots`` (e.g. the dataset folder). Raises :class:`VotesError` with a one-line message
    for a missing or unreadable file, a missing ``file`` column, no label columns, a count or weight that is not
    a number >= 0, or a file listed twice."""
    p = Path(path)
    if not p.is_file():
        raise VotesError(f"votes {p}: no such file" if not p.exists() else f"votes {p}: not a file")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise VotesError(f"votes {p}: empty file (expected a header: file,<label>,<label>...)")
            raw = [h.strip() for h in header]
            names = [h.lower() for h in raw]
            if FILE_COLUMN not in names:
                raise VotesError(f"votes {p}: no 'file' column (found {', '.join(raw[:12])})")
            fcol = names.index(FILE_COLUMN)
            wcol = names.index(WEIGHT_COLUMN) if WEIGHT_COLUMN in names else -1
            lcols = [i for i in range(len(raw)) if i not in (fcol, wcol)]
            if not lcols:
                raise VotesError(f"votes {p}: no label columns besides 'file'")
            columns = [normalise_label(raw[i]) for i in lcols]
            dupes = sorted({c for c in columns if columns.count(c) > 1})
            if dupes:
                raise VotesError(f"votes {p}: columns {[raw[i] for i in lcols if normalise_label(raw[i]) in dupes]} "
                                 f"all mean {dupes}")
            bases = [p.parent, *(Path(r) for r in roots)]
            keys: list[str] = []
            counts: list[list[float]] = []
            weights: list[float] = []
            seen: dict[str, int] = {}
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not v.strip() for v in row):
                    continue
                where = f"votes {p}, line {lineno}"
                if len(row) != len(raw):
                    raise VotesError(f"{where}: {len(row)} fields, the header has {len(raw)}")
                name = row[fcol].strip()
                if not name:
                    raise VotesError(f"{where}: empty file name")
                values = [_number(row[i], raw[i], where) for i in lcols]
                w = _number(row[wcol], WEIGHT_COLUMN, where) if wcol >= 0 else 1.0
                key = _resolve(name, bases)
                if key in seen:
                    raise VotesError(f"{where}: {name} is listed twice (also on line {seen[key]})")
                seen[key] = lineno
                keys.append(key)
                counts.append(values)
                weights.append(w)
    except UnicodeDecodeError:
        raise VotesError(f"votes {p}: not a text CSV file") from None
    except csv.Error as e:
        raise VotesError(f"votes {p}: not a readable CSV ({e})") from None
    except OSError as e:
        raise VotesError(f"votes {p}: cannot read ({e.strerror or e})") from None
    if not keys:
        raise VotesError(f"votes {p}: no rows")
    return Votes(p, columns, np.array(counts, dtype=np.float64), np.array(weights, dtype=np.float64), keys,
                 has_weights=wcol >= 0)


def _number(text: str, column: str, where: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise VotesError(f"{where}: {column} is {text.strip()!r}, not a number") from None
    if not math.isfinite(v) or v < 0:
        raise VotesError(f"{where}: {column} is {text.strip()}, expected a number >= 0")
    return v


def _resolve(name: str, bases: Sequence[Path]) -> str:
    q = Path(name)
    if q.is_absolute():
        return _key(q)
    for base in bases:
        if (base / q).exists():
            return _key(base / q)
    return _key(bases[0] / q)
