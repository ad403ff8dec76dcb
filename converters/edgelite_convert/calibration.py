"""Representative datasets for full-integer calibration.

Where samples come from: a folder of images (jpg/png/pgm/bmp, recursive), an
``.npy``/``.npz`` file, or any Python iterable/callable yielding arrays or
``{input_name: array}``. Image folders go through one :class:`PreprocessSpec`,
the same one written into the model and applied by the runtime.

Before converting, the samples are checked and refused with the reason:
none or too few (error below 10; a warning below 100 unless ``min_recommended``
is lowered), shape/dtype mismatch with the model input, non-finite values,
constant samples, duplicates, and values outside the range the declared
preprocessing can produce (e.g. 0..255 data for a model declared as [-1, 1]).

Why these checks: int8 ranges come from the min/max (or histogram) of
activations over these samples. A constant or duplicated set under-estimates
ranges (saturation on real data); data on the wrong scale makes every
quantization parameter wrong while the conversion still "succeeds".
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from edgelite.errors import CalibrationDataError, ImageError
from edgelite.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}
MIN_SAMPLES = 10
RECOMMENDED_SAMPLES = 100


class CalibrationWarning(UserWarning):
    """Calibration data is usable but weak (e.g. fewer than 100 samples)."""


@dataclasses.dataclass
class CalibrationSet:
    """Materialised, checked calibration samples: ``{input_name: array (N, ...)}``."""

    arrays: dict[str, np.ndarray]
    source: str
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def summary(self) -> dict:
        return {"count": self.count, "source": self.source, "skipped": len(self.skipped),
                "inputs": {k: {"shape": list(v.shape[1:]), "min": float(v.min()), "max": float(v.max()),
                               "mean": float(v.mean())} for k, v in self.arrays.items()}}

    def split(self, holdout: int) -> tuple["CalibrationSet", "CalibrationSet"]:
        n = self.count
        k = max(0, min(holdout, n - MIN_SAMPLES))
        a = {n_: v[: n - k] for n_, v in self.arrays.items()}
        b = {n_: v[n - k:] for n_, v in self.arrays.items()}
        return CalibrationSet(a, self.source), CalibrationSet(b, self.source + " (held out)")

    def save(self, path: str | os.PathLike) -> None:
        np.savez(path, **self.arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, source: str = "") -> "CalibrationSet":
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files}, source or str(path))


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _load_no_pickle(p: Path):
    """``np.load`` that never unpickles: an object array is a typed refusal.

    Loading a pickle runs arbitrary code chosen by whoever wrote the file, so a
    calibration file is read with ``allow_pickle=False`` and numpy's plain
    ``ValueError`` becomes a :class:`CalibrationDataError`.
    """
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise CalibrationDataError(
                f"{p}: holds pickled Python objects (an object array); refusing to unpickle calibration data. "
                "Save plain numeric arrays: np.save(path, np.asarray(samples, dtype=np.float32))") from None
        raise CalibrationDataError(f"{p}: not a readable .npy/.npz file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise CalibrationDataError(f"{p}: not a readable .npy/.npz file ({exc})") from None


def _check_not_object(p: Path, z, key: str) -> None:
    try:
        z[key]
    except ValueError as exc:
        raise CalibrationDataError(
            f"{p}: array {key!r} holds pickled Python objects; refusing to unpickle calibration data") from None


def _iter_source(source, spec: PreprocessSpec | None, skipped: list[str]) -> tuple[Iterator, str]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            if spec is None:
                raise CalibrationDataError(
                    f"calibration folder {p} holds images but no preprocessing spec was given; declare one "
                    "(--input-size/--mean/--std/--color) so calibration matches inference")
            files = list_images(p)
            if not files:
                raise CalibrationDataError(f"calibration folder {p} has no images ({', '.join(sorted(IMAGE_EXTS))})")

            def gen():
                from edgelite.image import load_image
                for f in files:
                    try:
                        img = load_image(f)
                    except ImageError as e:
                        skipped.append(f"{f}: {e}")
                        continue
                    yield spec.apply(img)
            return gen(), f"folder {p} ({len(files)} images)"
        if p.is_file() and p.suffix == ".npy":
            arr = _load_no_pickle(p)
            return iter(arr[:, None] if arr.ndim >= 1 else [arr]), f"{p.name} ({len(arr)} samples)"
        if p.is_file() and p.suffix == ".npz":
            z = _load_no_pickle(p)
            keys = list(z.files)
            for k in keys:
                _check_not_object(p, z, k)
            n = len(z[keys[0]])
            if any(len(z[k]) != n for k in keys):
                raise CalibrationDataError(f"{p}: arrays have different sample counts")
            if len(keys) == 1:
                return iter(z[keys[0]][:, None]), f"{p.name} ({n} samples)"
            return ({k: z[k][i:i + 1] for k in keys} for i in range(n)), f"{p.name} ({n} samples, inputs {keys})"
        raise CalibrationDataError(f"calibration source {p} does not exist or is not a folder/.npy/.npz")
    if isinstance(source, np.ndarray):
        return iter(source[:, None]), f"array ({len(source)} samples)"
    if callable(source):
        source = source()
    if isinstance(source, Iterable):
        return iter(source), f"iterable ({type(source).__name__})"
    raise CalibrationDataError(f"unsupported calibration source {type(source).__name__}: give a folder, "
                               ".npy/.npz, array, iterable or callable")


def _source_length(source, rank: int) -> int | None:
    """Number of samples ``source`` holds, when known without reading it (for the progress bar)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if p.is_dir():
                return len(list_images(p))
            if p.is_file() and p.suffix == ".npy":
                return int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0])
            if p.is_file() and p.suffix == ".npz":
                with np.load(p, allow_pickle=False) as z:
                    return int(len(z[z.files[0]])) if z.files else 0
            return None
        if isinstance(source, np.ndarray):
            return int(len(source))
        if hasattr(source, "__len__") and not callable(source):
            n = 0
            for x in source:  # a list of arrays: each may carry a batch of samples
                a = next(iter(x.values())) if isinstance(x, Mapping) else (x[0] if isinstance(x, (list, tuple)) else x)
                a = np.asarray(a)
                n += int(a.shape[0]) if a.ndim == rank else 1
            return n
    except Exception:  # noqa: BLE001 - only a progress-bar total
        return None
    return None


def build_calibration_set(source, input_specs: Sequence[tuple[str, Sequence[int], str]], *,
                          preprocess: PreprocessSpec | None = None, max_samples: int = 500,
                          min_samples: int = MIN_SAMPLES, min_recommended: int = RECOMMENDED_SAMPLES,
                          check_range: bool = True, progress: bool = True) -> CalibrationSet:
    """Collect and check calibration samples.

    Args:
        source: folder / .npy / .npz / array / iterable / callable.
        input_specs: ``(name, shape, dtype)`` per model input; shape includes batch
            (``None``/-1 allowed for the batch dim).
        preprocess: spec used for image folders; also the declared value range.
        max_samples: stop after this many (more rarely helps beyond a few hundred).

    Raises:
        CalibrationDataError: with the reason, for each refusal listed in the module doc.
    """
    skipped: list[str] = []
    total = _source_length(source, len(input_specs[0][1]) if input_specs else 0)
    it, desc = _iter_source(source, preprocess, skipped)
    names = [n for n, _, _ in input_specs]
    cols: dict[str, list[np.ndarray]] = {n: [] for n in names}
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            # the real number of samples that will be read (a folder/array/list may hold fewer
            # than max_samples); unknown for a generator, then tqdm shows a count
            bar = tqdm(total=min(max_samples, total) if total is not None else None, desc="calibration data",
                       unit="sample", leave=False)
        except ImportError:
            bar = None
    count = 0
    for i, sample in enumerate(it):
        if count >= max_samples:
            break
        if isinstance(sample, Mapping):
            unknown = [k for k in sample if k not in names]
            missing = [k for k in names if k not in sample]
            if unknown or missing:
                raise CalibrationDataError(f"sample {i}: input names {list(sample)} do not match the model's "
                                           f"{names} (unknown {unknown}, missing {missing})")
            parts = [sample[n] for n in names]
        elif isinstance(sample, (list, tuple)):
            parts = list(sample)
        else:
            parts = [sample]
        if len(parts) != len(names):
            raise CalibrationDataError(f"sample {i} has {len(parts)} arrays but the model has {len(names)} inputs")
        for (name, shape, dtype), arr in zip(input_specs, parts):
            arr = np.asarray(arr)
            if arr.dtype == object or arr.dtype.kind not in "biuf":
                raise CalibrationDataError(f"sample {i}, input {name!r}: dtype {arr.dtype} is not numeric")
            want = tuple(shape)
            if arr.ndim == len(want) - 1:
                arr = arr[None]
            if arr.ndim != len(want) or any(w not in (None, -1) and w != g
                                            for w, g in zip(want[1:], arr.shape[1:])):
                raise CalibrationDataError(
                    f"sample {i}, input {name!r}: shape {tuple(arr.shape)} does not match the model input "
                    f"{list(want)}" + (" (NCHW data for an NHWC model? transpose it)"
                                       if arr.ndim == 4 and sorted(arr.shape[1:]) == sorted(want[1:]) else ""))
            if np.dtype(dtype).kind == "f" and arr.dtype.kind not in "fiu":
                raise CalibrationDataError(f"sample {i}, input {name!r}: dtype {arr.dtype} for a float input")
            arr = arr.astype(np.dtype(dtype) if np.dtype(dtype).kind == "f" else arr.dtype)
            if not np.all(np.isfinite(arr)):
                raise CalibrationDataError(f"sample {i}, input {name!r}: contains NaN or inf")
            cols[name].append(arr)
        count += arr.shape[0]
        if bar is not None:
            bar.update(arr.shape[0])
    if bar is not None:
        bar.close()
    if count == 0:
        raise CalibrationDataError(f"no calibration samples from {desc}"
                                   + (f"; {len(skipped)} files were unreadable, e.g. {skipped[0]}" if skipped else ""))
    arrays = {n: np.concatenate(v, axis=0) for n, v in cols.items()}
    n = len(next(iter(arrays.values())))
    if n < min_samples:
        raise CalibrationDataError(f"only {n} calibration samples from {desc}; at least {min_samples} are required "
                                   f"(≥ {min_recommended} recommended) to estimate activation ranges")
    if n < min_recommended:
        warnings.warn(f"{n} calibration samples from {desc}: fewer than {min_recommended}; ranges may be "
                      "under-estimated and accuracy lower", CalibrationWarning, stacklevel=2)
    for name, arr in arrays.items():
        flat = arr.reshape(len(arr), -1)
        const = np.ptp(flat, axis=1) == 0
        if const.any():
            idx = np.flatnonzero(const)[:5].tolist()
            raise CalibrationDataError(f"input {name!r}: {int(const.sum())} constant sample(s) (e.g. indices {idx}); "
                                       "blank images teach nothing about ranges — remove them")
        digests = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in flat]
        if len(set(digests)) < len(digests):
            dup = len(digests) - len(set(digests))
            raise CalibrationDataError(f"input {name!r}: {dup} duplicate sample(s) out of {len(digests)}; "
                                       "de-duplicate the calibration set")
        if check_range and preprocess is not None and len(arrays) == 1:
            lo, hi = preprocess.value_range()
            tol = 0.05 * (hi - lo)
            amin, amax = float(arr.min()), float(arr.max())
            if amin < lo - tol or amax > hi + tol:
                raise CalibrationDataError(
                    f"input {name!r}: calibration values span [{amin:.3g}, {amax:.3g}] but the declared "
                    f"preprocessing (mean {list(preprocess.mean)}, std {list(preprocess.std)}) produces "
                    f"[{lo:.3g}, {hi:.3g}]; the data was normalised differently from what inference will do")
            if (amax - amin) < 0.1 * (hi - lo):
                raise CalibrationDataError(
                    f"input {name!r}: calibration values span only [{amin:.3g}, {amax:.3g}] of the declared "
                    f"[{lo:.3g}, {hi:.3g}]; data on the wrong scale (e.g. [0,1] for a 0..255 model)?")
    if skipped:
        log.warning("skipped %d unreadable calibration files, e.g. %s", len(skipped), skipped[0])
    return CalibrationSet(arrays, desc, skipped)
