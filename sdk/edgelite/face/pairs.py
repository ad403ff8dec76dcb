"""Face-verification accuracy on an LFW-format pairs file, 10-fold.

Format: an optional header line ``FOLDS PAIRS_PER_FOLD`` (LFW: ``10 300``: each
fold holds that many same-person pairs followed by as many different-person
pairs), then lines ``name i j`` (same person) or ``name1 i name2 j`` (different).
Images live at ``ROOT/name/name_%04d.jpg``. Headerless files are accepted: their
pairs are split into 10 contiguous folds.

Protocol (as LFW's "unrestricted" evaluation): for each fold, the cosine
threshold that maximises accuracy on the other nine folds is applied to it.
Images where no face is detected are counted (``failed_detections``) and their
pairs scored as a mismatch (predicted "different"), never dropped.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError


@dataclasses.dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    fold: int


def image_path(root: str | os.PathLike, name: str, idx: int) -> Path:
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"pairs file names must be plain person names, got {name!r}")
    return Path(root) / name / f"{name}_{idx:04d}.jpg"


def parse_pairs(path: str | os.PathLike, root: str | os.PathLike, folds: int = 10) -> list[Pair]:
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"pairs file {path} is empty")
    header = None
    if len(lines[0]) == 2 and all(x.isdigit() for x in lines[0]):
        header = (int(lines[0][0]), int(lines[0][1]))
        lines = lines[1:]
    raw = []
    for n, parts in enumerate(lines, 1 + (header is not None)):
        try:
            if len(parts) == 3:
                raw.append((image_path(root, parts[0], int(parts[1])), image_path(root, parts[0], int(parts[2])), True))
            elif len(parts) == 4:
                raw.append((image_path(root, parts[0], int(parts[1])), image_path(root, parts[2], int(parts[3])), False))
            else:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}:{n}: expected 'name i j' or 'name1 i name2 j', got {' '.join(parts)!r}") from None
    if header:
        nf, per = header
        if len(raw) != nf * 2 * per:
            raise InputError(f"{path}: header says {nf} folds x {per} pairs x 2 = {nf * 2 * per} lines, found {len(raw)}")
        return [Pair(str(a), str(b), s, i // (2 * per)) for i, (a, b, s) in enumerate(raw)]
    k = max(2, min(folds, len(raw)))
    bounds = np.linspace(0, len(raw), k + 1).astype(int)
    fold_of = np.searchsorted(bounds, np.arange(len(raw)), side="right") - 1
    return [Pair(str(a), str(b), s, int(f)) for (a, b, s), f in zip(raw, fold_of)]


def best_threshold(sims: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy of ``sims >= t`` (midpoints between sorted scores)."""
    s = np.sort(np.unique(sims[np.isfinite(sims)]))
    if s.size == 0:
        return 0.0
    cands = np.concatenate([[s[0] - 1e-6], (s[1:] + s[:-1]) / 2, [s[-1] + 1e-6]])
    acc = [(np.where(sims >= t, same, ~same)).mean() for t in cands]
    return float(cands[int(np.argmax(acc))])


def kfold_accuracy(sims: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    accs, thrs = [], []
    for f in np.unique(folds):
        test = folds == f
        t = best_threshold(sims[~test], same[~test])
        accs.append(float((np.where(sims[test] >= t, same[test], ~same[test])).mean()))
        thrs.append(t)
    return {"accuracy": float(np.mean(accs)), "std": float(np.std(accs)), "threshold": float(np.mean(thrs)),
            "fold_accuracies": accs, "fold_thresholds": thrs}


def evaluate_pairs(pairs: list[Pair], embed_image: Callable[[str], np.ndarray | None], *,
                   progress: bool = False) -> dict:
    """``embed_image(path) -> embedding or None`` (no face). Returns the JSON-ready report."""
    cache: dict[str, np.ndarray | None] = {}
    paths = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    it = paths
    if progress:
        try:
            from tqdm import tqdm
            it = tqdm(paths, desc="embedding", unit="img", leave=False)
        except ImportError:
            pass
    for p in it:
        cache[p] = embed_image(p)
    failed = sorted(p for p, e in cache.items() if e is None)
    sims = np.array([float(np.dot(cache[pr.a], cache[pr.b])) if cache[pr.a] is not None and cache[pr.b] is not None
                     else -np.inf for pr in pairs])
    same = np.array([pr.same for pr in pairs])
    folds = np.array([pr.fold for pr in pairs])
    res = kfold_accuracy(sims, same, folds)
    res.update(pairs=len(pairs), images=len(paths), failed_detections=len(failed),
               failed_images=failed[:20])
    return res
