"""Compare a quantized model with its float reference on held-out samples.

Per output: cosine similarity (flattened, per sample then averaged), max/mean
absolute error, SNR in dB (10·log10(‖ref‖² / ‖ref − q‖²)), and for classifiers
top-1 agreement. Both models run with :class:`edgelite.Model` (the runtime the
device uses), so the figures are what the device will see.
"""
from __future__ import annotations

import numpy as np

from edgelite.model import Model


def compare_outputs(ref: np.ndarray, got: np.ndarray, classifier: bool = False) -> dict:
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    got = np.asarray(got, np.float64).reshape(len(got), -1)
    err = got - ref
    num = (ref * got).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    # Per-sample cosine is meaningless where the reference is (near) all zeros, e.g. a
    # detector's objectness map on an image without faces: skip those samples there,
    # and also report the cosine over all samples at once ("cosine_global").
    ref_n = np.linalg.norm(ref, axis=1)
    ok = ref_n > 1e-3 * max(float(ref_n.max()), 1e-30)
    cos = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)[ok]
    if cos.size == 0:
        cos = np.array([1.0])
    g_den = np.linalg.norm(ref) * np.linalg.norm(got)
    sig = (ref ** 2).sum()
    noise = (err ** 2).sum()
    out = {
        "cosine_global": float((ref * got).sum() / g_den) if g_den > 0 else float(noise == 0),
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "cosine_samples": int(ok.sum()),
        "max_abs_error": float(np.abs(err).max()), "mean_abs_error": float(np.abs(err).mean()),
        "snr_db": float(10 * np.log10(sig / noise)) if noise > 0 else float("inf"),
        "ref_range": [float(ref.min()), float(ref.max())],
        # one value everywhere, on every sample: a collapsed quantized output when the reference varies
        "constant": bool(got.size and got.max() == got.min()),
        "ref_constant": bool(ref.size and ref.max() == ref.min()),
    }
    if classifier and ref.shape[1] > 1:
        out["top1_agreement"] = float((ref.argmax(1) == got.argmax(1)).mean())
    return out


def validate_models(float_model: bytes | str, quant_model: bytes | str, samples: dict[str, np.ndarray],
                    *, classifier: bool | None = None, num_threads: int | None = None) -> dict:
    """Run both models on ``samples`` (``{input_name_or_index: (N, ...)}`` float arrays, in the float
    model's input order) and compare each output (matched by position)."""
    from edgelite.errors import InvalidModelError

    fm = Model(float_model, num_threads=num_threads)
    xnnpack_error = None
    try:
        qm = Model(quant_model, num_threads=num_threads)
    except InvalidModelError as e:
        # XNNPACK refuses quantization parameters it cannot requantize (e.g. an activation
        # range of ~0 from calibration data that never excites it): validate on the
        # builtin kernels so the report can say what went wrong.
        xnnpack_error = str(e)
        qm = Model(quant_model, num_threads=num_threads, delegates=None)
    arrays = list(samples.values())
    n = len(arrays[0])
    ref_outs, q_outs = [], []
    for i in range(n):
        feed = [a[i:i + 1] for a in arrays]
        ref_outs.append(list(fm.run(feed).values()))
        q_outs.append(list(qm.run(feed).values()))
    report = {"samples": n, "outputs": {}}
    if xnnpack_error:
        report["xnnpack_error"] = xnnpack_error
    for j, spec in enumerate(fm.outputs):
        ref = np.concatenate([r[j] for r in ref_outs])
        got = np.concatenate([q[j] for q in q_outs]).astype(np.float32)
        is_cls = classifier if classifier is not None else (ref.ndim == 2 and ref.shape[1] > 1 and
                                                            np.allclose(ref.sum(1), 1, atol=1e-3))
        report["outputs"][spec.name] = compare_outputs(ref, got, is_cls)
    cos = [o["cosine_global"] for o in report["outputs"].values()]
    report["cosine_min_over_outputs"] = float(min(cos))
    return report


def collapsed_outputs(report: dict, min_cosine: float, min_snr_db: float) -> dict[str, str]:
    """Outputs of a validation report that look collapsed, with the reason.

    An output collapsed when the quantized model returns one constant value while
    the float model's output varies, or when its cosine over all held-out samples
    or its SNR is below the floor. Healthy int8 models are far above the default
    floors (the zoo: cosine >= 0.98, SNR >= 11 dB on every output).
    """
    bad = {}
    for name, o in (report.get("outputs") or {}).items():
        if o.get("ref_constant"):
            continue
        why = []
        if o.get("constant"):
            why.append(f"constant output ({o['ref_range'][0]:.4g}..{o['ref_range'][1]:.4g} in float, one value in "
                       "the quantized model)")
        if o["cosine_global"] < min_cosine:
            why.append(f"cosine {o['cosine_global']:.3f} < {min_cosine}")
        if o["snr_db"] < min_snr_db:
            why.append(f"SNR {o['snr_db']:.1f} dB < {min_snr_db} dB")
        if why:
            bad[name] = ", ".join(why)
    return bad
