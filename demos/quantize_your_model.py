"""Tutorial: train a small Keras CNN, quantize it to full-integer int8, check it, run it.

    python demos/quantize_your_model.py [--out out/quantize_tutorial] [--epochs 40] [--quick]
    python demos/quantize_your_model.py --model my_model.keras --calibration my_images/ --heldout my_test_images/

Every step prints a heading and uses only the public API (``edgelite``,
``edgelite_convert``), so the script doubles as a recipe for your own model:

1. **Data.** A toy task made from the ORL faces shipped in ``data/faces/orl``:
   tell four people (``s1``..``s4``) apart. Images 1-8 of each person train the
   model, images 9-10 are held out. Every image goes through one
   :class:`edgelite.PreprocessSpec` (64x64 grey, ``x / 255``) — the same object the
   converter calibrates with, writes into the model and the runtime applies, so
   training, calibration and inference cannot drift apart.
2. **Model.** A 3-conv CNN (about 6 k parameters), trained for a few seconds on
   CPU with shift/flip/brightness augmentation. Skipped with ``--model``.
3. **Convert** with :func:`edgelite_convert.convert`: per-channel int8 weights,
   int8 activations, int8 input/output, calibrated on a *representative folder*
   of images (every ORL face except the held-out ones: unlabeled faces of other
   people are still representative inputs). The CLI equivalent is printed.
4. **Validation report**: the float and int8 TFLite models on the held-out images
   (cosine, max error, SNR, top-1 agreement), plus the accuracy of both.
5. **Inspect**: :func:`edgelite.inspect_model` — fully integer? which ops XNNPACK
   will not run in int8?
6. **Benchmark** float32 vs int8 with :func:`edgelite.benchmark` in the same run
   (medians and their ratio; absolute numbers depend on the machine).
7. **Run** the int8 model with :class:`edgelite.Model` on a held-out image, with the
   preprocessing read back from the model's own metadata.

``--quick`` (used by the tests) trains for fewer epochs, calibrates on 100 images
and benchmarks briefly; the numbers it prints are real but noisier.

Needs the ``convert`` extra (TensorFlow) for steps 2-3: ``pip install 'edgelite[convert]'``.
ORL faces: AT&T Laboratories Cambridge (see data/faces/README.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORL = ROOT / "data" / "faces" / "orl"
SUBJECTS = ["s1", "s2", "s3", "s4"]
TRAIN_IDS = range(1, 9)   # images 1.pgm .. 8.pgm of each subject
HELDOUT_IDS = (9, 10)


def heading(n: int, text: str) -> None:
    print(f"\n=== {n}. {text} " + "=" * max(3, 70 - len(text)), flush=True)


def make_folders(work: Path, quick: bool) -> tuple[Path, Path]:
    """Copy the calibration and held-out images into folders, as you would for your own data.

    Returns:
        (calibration folder, held-out folder).
    """
    calib, held = work / "calibration", work / "heldout"
    for d in (calib, held):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    heldout = {(s, i) for s in SUBJECTS for i in HELDOUT_IDS}
    n = 0
    # Calibration = the input distribution the model will see, not the labelled
    # training set: all ORL faces except the held-out ones. Quick mode keeps 100.
    for subj in sorted(ORL.iterdir(), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else 0):
        if not subj.is_dir():
            continue
        for f in sorted(subj.glob("*.pgm"), key=lambda p: int(p.stem)):
            if (subj.name, int(f.stem)) in heldout:
                (held / subj.name).mkdir(exist_ok=True)
                shutil.copy(f, held / subj.name / f.name)
            elif not quick or n < 100:
                shutil.copy(f, calib / f"{subj.name}_{f.name}")
                n += 1
    return calib, held


def load_set(spec, ids) -> tuple[np.ndarray, np.ndarray]:
    """Images of SUBJECTS with the given ids, preprocessed by ``spec``: (N, H, W, C) float32, labels (N,)."""
    import edgelite

    xs, ys = [], []
    for label, subj in enumerate(SUBJECTS):
        for i in ids:
            xs.append(spec.apply(edgelite.load_image(ORL / subj / f"{i}.pgm"))[0])
            ys.append(label)
    return np.stack(xs), np.array(ys)


def augment(x: np.ndarray, y: np.ndarray, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shifted (±4 px), mirrored and brightness-jittered copies: 32 images are too few to learn from."""
    rng = np.random.default_rng(seed)
    xs, ys = [x], [y]
    for _ in range(copies):
        a = x.copy()
        for k in range(len(a)):
            dy, dx = rng.integers(-4, 5, size=2)
            a[k] = np.roll(a[k], (int(dy), int(dx)), axis=(0, 1))
            if rng.random() < 0.5:
                a[k] = a[k][:, ::-1]
            a[k] = np.clip(a[k] * rng.uniform(0.85, 1.15), 0.0, 1.0)
        xs.append(a)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def build_and_train(spec, epochs: int, out: Path) -> tuple[Path, float]:
    """Build the CNN, train it, save it as ``.keras``; returns (path, training seconds)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    h, w = spec.size
    x_tr, y_tr = augment(*load_set(spec, TRAIN_IDS), copies=7)
    print(f"training set: {len(x_tr)} images (32 originals + 7 augmented copies each), input {x_tr.shape[1:]}")
    inp = keras.Input((h, w, spec.channels), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out_t = keras.layers.Dense(len(SUBJECTS), activation="softmax", name="probs")(x)
    model = keras.Model(inp, out_t, name="orl4")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print(f"model: {model.count_params():,} parameters; training {epochs} epochs ...", flush=True)
    t0 = time.perf_counter()
    hist = model.fit(x_tr, y_tr, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    secs = time.perf_counter() - t0
    print(f"trained in {secs:.1f} s; final training accuracy {hist.history['accuracy'][-1]:.3f}")
    path = out / "orl4.keras"
    model.save(path)
    print(f"saved {path}")
    return path, secs


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an edgelite.Model over a float batch (one image at a time, as on a device)."""
    pred = [int(np.argmax(model(x[i:i + 1]))) for i in range(len(x))]
    return float(np.mean(np.array(pred) == y))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "out" / "quantize_tutorial"), help="working folder")
    ap.add_argument("--model", help="your own .keras model instead of the toy CNN (skips training)")
    ap.add_argument("--calibration", help="representative image folder; None = ORL faces except the held-out ones")
    ap.add_argument("--heldout", help="held-out image folder for validation; None = ORL s1-s4 images 9-10")
    ap.add_argument("--mean", type=float, default=0.0, help="preprocessing mean (0..255 scale) for --model")
    ap.add_argument("--std", type=float, default=255.0, help="preprocessing std (0..255 scale) for --model")
    ap.add_argument("--epochs", type=int, default=40, help="training epochs of the toy CNN")
    ap.add_argument("--threads", type=int, default=None, help="interpreter threads; None = min(cores, 4)")
    ap.add_argument("--quick", action="store_true", help="fewer epochs, 100 calibration images, short benchmark")
    args = ap.parse_args(argv)

    import edgelite
    from edgelite import PreprocessSpec

    try:
        from edgelite_convert import ConvertOptions, convert
    except ImportError:
        print("this tutorial converts models, which needs TensorFlow: pip install 'edgelite[convert]'",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = min(args.epochs, 12) if args.quick else args.epochs
    t_all = time.perf_counter()

    # -- 1. data ---------------------------------------------------------------------------
    heading(1, "Data and the one preprocessing spec")
    if args.model:
        import keras  # the user's model tells us its input size and channels

        shape = keras.models.load_model(args.model, compile=False).input_shape
        h, w, c = shape[1], shape[2], shape[3]
        spec = PreprocessSpec(size=(h, w), resize="stretch", color="GRAY" if c == 1 else "RGB",
                              mean=args.mean, std=args.std)
    else:
        spec = PreprocessSpec(size=(64, 64), resize="stretch", color="GRAY", mean=0.0, std=255.0)
    print(f"preprocessing: {spec.to_dict()}")
    calib, held = make_folders(out, args.quick)
    if args.calibration:
        calib = Path(args.calibration)
    if args.heldout:
        held = Path(args.heldout)
    print(f"calibration folder: {calib} ({sum(1 for p in calib.rglob('*') if p.is_file())} files)")
    print(f"held-out folder:    {held} ({sum(1 for p in held.rglob('*') if p.is_file())} files)")

    # -- 2. model --------------------------------------------------------------------------
    if args.model:
        heading(2, "Your model")
        keras_path = Path(args.model)
        print(f"using {keras_path} (no training)")
    else:
        heading(2, "Build and train a small Keras CNN")
        keras_path, _ = build_and_train(spec, epochs, out)

    # -- 3. convert ------------------------------------------------------------------------
    heading(3, "Convert to full-integer int8")
    int8_path, float_path = out / "orl4_int8.tflite", out / "orl4_float32.tflite"
    if args.model:
        int8_path, float_path = out / f"{keras_path.stem}_int8.tflite", out / f"{keras_path.stem}_float32.tflite"
    labels = SUBJECTS if not args.model else None
    labels_txt = out / "labels.txt"
    if labels:
        labels_txt.write_text("\n".join(labels) + "\n")
    opts = ConvertOptions(max_calibration_samples=100 if args.quick else 500,
                          recommended_calibration_samples=100)
    mean_s = " ".join(f"{v:g}" for v in spec.mean)
    std_s = " ".join(f"{v:g}" for v in spec.std)
    print("CLI equivalent:\n  edgelite convert "
          f"{keras_path} -o {int8_path} --calibration {calib} --validate {held} "
          f"--input-size {spec.size[0]} {spec.size[1]} --color {spec.color.value} --mean {mean_s} --std {std_s} "
          + (f"--task classification --labels {labels_txt}" if labels else ""))
    t0 = time.perf_counter()
    res = convert(keras_path, int8_path, calibration=calib, validation=held, preprocess=spec, options=opts,
                  task="classification" if labels else "generic", labels=labels, progress=False,
                  num_threads=args.threads)
    float_path.write_bytes(res.float_model)  # the float TFLite the converter compared against
    r = res.report
    print(f"converted in {time.perf_counter() - t0:.1f} s -> {int8_path} ({r['size_bytes'] / 1024:.1f} KiB; "
          f"float32 TFLite {r['float_size_bytes'] / 1024:.1f} KiB -> {float_path.name})")
    print(f"report: {int8_path.with_suffix('.report.json')}")

    # -- 4. validation ---------------------------------------------------------------------
    heading(4, "Validation report: float32 vs int8 TFLite on held-out images")
    v = r.get("validation") or {}
    print(f"calibration: {r['calibration']['count']} samples from {r['calibration']['source']}")
    print(f"held-out samples: {v.get('samples', 0)}")
    for name, o in (v.get("outputs") or {}).items():
        top1 = f"  top-1 agreement {o['top1_agreement']:.3f}" if "top1_agreement" in o else ""
        print(f"  output {name}: cosine {o['cosine_mean']:.4f} (min {o['cosine_min']:.4f})  "
              f"max|err| {o['max_abs_error']:.4f}  SNR {o['snr_db']:.1f} dB{top1}")
    if labels:
        x_ho, y_ho = load_set(spec, HELDOUT_IDS)
        fm = edgelite.Model(float_path, num_threads=args.threads)
        qm = edgelite.Model(int8_path, num_threads=args.threads)
        print(f"held-out accuracy (8 images, 4 people): float32 {accuracy(fm, x_ho, y_ho):.3f}   "
              f"int8 {accuracy(qm, x_ho, y_ho):.3f}")

    # -- 5. inspect ------------------------------------------------------------------------
    heading(5, "Inspect the int8 model (edgelite.inspect_model)")
    insp = edgelite.inspect_model(int8_path)
    print(insp.to_text())
    print(f"\nfully integer: {'yes' if insp.fully_integer else 'NO'}; ops XNNPACK will not run in int8: "
          + (", ".join(insp.xnnpack_unsupported) or "none"))
    if "SOFTMAX" in insp.xnnpack_unsupported:
        print("note: an int8 SOFTMAX over a handful of classes costs next to nothing on the builtin kernel; "
              "it only matters on wide outputs (or drop it and take the argmax of the logits).")

    # -- 6. benchmark ----------------------------------------------------------------------
    heading(6, "Benchmark float32 vs int8 (edgelite.benchmark, same run)")
    runs, min_s = (30, 0.3) if args.quick else (200, 2.0)
    bf = edgelite.benchmark(float_path, num_threads=args.threads, runs=runs, min_seconds=min_s)
    bq = edgelite.benchmark(int8_path, num_threads=args.threads, runs=runs, min_seconds=min_s)
    for label, b in (("float32", bf), ("int8", bq)):
        print(f"  {label:8s} median {b.latency.p50 * 1e3:8.1f} us   p90 {b.latency.p90 * 1e3:8.1f} us   "
              f"({b.latency.count} runs, {b.num_threads} thread(s), {', '.join(b.delegates) or 'no delegate'}, "
              f"{b.size_bytes / 1024:.1f} KiB)")
    cpu = edgelite.doctor.cpu_info()
    print(f"  int8 speed-up (float32 median / int8 median): {bf.latency.p50 / bq.latency.p50:.2f}x "
          f"on {cpu.get('model', cpu['machine'])} ({cpu['cores']} cores visible)")
    print("  (a model this small is dominated by per-call overhead, so this ratio says little about a bigger "
          "model; measure yours on the target device: edgelite bench MODEL)")

    # -- 7. run ----------------------------------------------------------------------------
    heading(7, "Run the int8 model on a held-out image (edgelite.Model)")
    m = edgelite.Model(int8_path, num_threads=args.threads)
    files = sorted(p for p in held.rglob("*") if p.is_file())
    img_path = files[-1]
    img = edgelite.load_image(img_path)  # HWC uint8 RGB, whatever the file format
    pre = m.metadata.preprocessing       # read back from the model: the spec it was calibrated with
    x = pre.apply(img)                   # float32 (1, 64, 64, 1)
    probs = m(x)                         # quantized in, int8 out dequantized to float32
    print(f"image {img_path.relative_to(held)} ({img.shape[1]}x{img.shape[0]}) -> input {x.shape} {x.dtype}; "
          f"model input {np.dtype(m.inputs[0].dtype).name} "
          f"scale {m.inputs[0].scale:.5f} zero-point {m.inputs[0].zero_point}")
    names = m.metadata.labels or tuple(str(i) for i in range(probs.shape[-1]))
    best = int(np.argmax(probs))
    print("probabilities: " + "  ".join(f"{n} {p:.3f}" for n, p in zip(names, probs.reshape(-1))))
    print(f"prediction: {names[best]}" + (f" (true: {img_path.parent.name})" if labels else ""))
    # The fast path: uint8 pixels straight to the int8 tensor with one table lookup per channel.
    q = pre.apply_quantized(img, m.inputs[0].scale, m.inputs[0].zero_point, m.inputs[0].dtype)
    same = np.array_equal(np.argmax(m(q)), best)
    print(f"apply_quantized (uint8 -> int8 lookup table) gives the same prediction: {same}")
    print(f"\ndone in {time.perf_counter() - t_all:.1f} s; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
