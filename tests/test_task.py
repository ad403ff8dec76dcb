"""One rule for task options: ``Task(options, **overrides)`` applies every override
(through the options' own validation) or raises; models load lazily; close works."""
from __future__ import annotations

import pytest

from edgelite.errors import InputError
from edgelite.face import (FaceDetector, FaceDetectorOptions, FaceEmbedder, FaceEmbedderOptions, FaceRecognizer,
                           FaceRecognizerOptions)


@pytest.mark.parametrize("cls,opts", [(FaceDetector, FaceDetectorOptions), (FaceEmbedder, FaceEmbedderOptions),
                                      (FaceRecognizer, FaceRecognizerOptions)])
def test_overrides_apply_on_top_of_options_or_raise(cls, opts):
    t = cls(options=opts(precision="float32"), num_threads=1)  # used to drop num_threads silently (FaceEmbedder)
    assert t.options.num_threads == 1 and t.options.precision == "float32"
    assert cls(num_threads=3).options.num_threads == 3
    assert cls().options == opts()
    with pytest.raises(InputError, match="no option"):
        cls(options=opts(), num_thread=2)  # a typo is an error, not ignored
    with pytest.raises(InputError):
        cls(options=opts(), precision="int4")  # the options' own validation runs on the result
    with pytest.raises(InputError, match="options must be"):
        cls(options={"precision": "int8"})


def test_recognizer_refuses_options_in_the_gallery_slot():
    with pytest.raises(InputError, match="gallery"):
        FaceRecognizer(FaceRecognizerOptions())


def test_models_load_lazily_and_close_releases_them(tmp_path):
    det = FaceDetector(model_path=str(tmp_path / "missing.tflite"))  # building it touches no file
    assert det._models == {}
    with pytest.raises(FileNotFoundError):
        det.model()
    with FaceDetector() as d:
        assert d._models == {}
    assert d._models == {}


def test_a_closed_detector_reloads_and_detects_the_same_faces(zoo_models):
    """The per-frame-size setup (model, spec, plan, decoder) is re-made after close():
    the next frame runs on the reloaded model, not on the released interpreter."""
    from pathlib import Path

    import edgelite

    img = edgelite.load_image(Path(__file__).resolve().parents[1] / "data" / "faces" / "demo" / "Andrew_Morgan.jpg")
    det = FaceDetector(num_threads=1)
    first = det.detect(img)
    m = det.model(det.choose_size(img.shape[:2]))
    det.close()
    again = det.detect(img)
    assert det.model(det.choose_size(img.shape[:2])) is not m
    assert len(first) == 1 and again == first
    det.close()
