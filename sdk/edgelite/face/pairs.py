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


def write_lfw_layout(src_root: str | os.PathLike, dst_root: str | os.PathLike, subjects, *,
                     pad: float = 0.5) -> dict[str, int]:
    """Copy a folder-per-person dataset (e.g. ORL ``s1/1.pgm``) into LFW layout
    ``DST/name/name_%04d.jpg`` (1-based), padding each tight crop by ``pad`` of its size
    with black on every side so a detector sees context around the face (LFW images are
    250x250 with the face in the middle). Returns images per person."""
    from ..image import load_image, to_bgr

    import cv2

    counts = {}
    for s in subjects:
        files = sorted(Path(src_root, s).glob("*.*"), key=lambda p: (len(p.stem), p.stem))
        files = [f for f in files if f.suffix.lower() in (".pgm", ".jpg", ".png", ".jpeg", ".bmp")]
        (Path(dst_root) / s).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files, 1):
            img = load_image(f)
            h, w = img.shape[:2]
            py, px = int(h * pad), int(w * pad)
            canvas = np.zeros((h + 2 * py, w + 2 * px, 3), np.uint8)
            canvas[py:py + h, px:px + w] = img
            cv2.imwrite(str(image_path(dst_root, s, i)), to_bgr(canvas), [cv2.IMWRITE_JPEG_QUALITY, 95])
        counts[s] = len(files)
    return counts


def make_pairs(counts: dict[str, int], *, folds: int = 10, per_fold: int = 30, seed: int = 0) -> list[str]:
    """An LFW-format pairs file body (header + lines): ``folds`` folds of ``per_fold``
    same-person and ``per_fold`` different-person pairs, drawn without repetition."""
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    same_all = [(n, i, j) for n in names for i in range(1, counts[n] + 1) for j in range(i + 1, counts[n] + 1)]
    rng.shuffle(same_all)
    need = folds * per_fold
    if len(same_all) < need:
        raise InputError(f"only {len(same_all)} same-person pairs available, {need} needed")
    diff, seen = [], set()
    while len(diff) < need:
        a, b = rng.choice(len(names), 2, replace=False)
        i, j = int(rng.integers(1, counts[names[a]] + 1)), int(rng.integers(1, counts[names[b]] + 1))
        key = (names[a], i, names[b], j)
        if key not in seen:
            seen.add(key)
            diff.append(key)
    lines = [f"{folds}\t{per_fold}"]
    for f in range(folds):
        lines += [f"{n}\t{i}\t{j}" for n, i, j in same_all[f * per_fold:(f + 1) * per_fold]]
        lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in diff[f * per_fold:(f + 1) * per_fold]]
    return lines
