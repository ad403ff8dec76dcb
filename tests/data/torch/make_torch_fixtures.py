#!/usr/bin/env python3
"""Generate the small PyTorch-exported ONNX fixtures in this folder.

The models are torchvision-style blocks written here (torchvision is not needed),
narrowed and at small input sizes so the files stay small, with random weights and
BatchNorm statistics re-estimated on synthetic images (so activations are not
degenerate). Each is exported with ``torch.onnx.export`` (the TorchScript exporter,
``dynamo=False``: it gives the cleaner graph for our importer - no onnxscript
functions, BatchNorm kept as one op) with a dynamic batch axis, opset 17.

    python tests/data/torch/make_torch_fixtures.py           # regenerate (needs torch)
    python tests/data/torch/make_torch_fixtures.py --check   # committed files == models built here

``fixtures.json`` records the torch version used, the opset, each file's SHA-256
and input shape. ``make test`` converts these files (no torch needed);
``make test-torch`` also runs the live torch path (``convert(torch_module, ...)``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPSET = 17


def _nets():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act() if act is not nn.PReLU else nn.PReLU(cout))
        return nn.Sequential(*layers)

    class SE(nn.Module):  # torchvision SqueezeExcitation
        def __init__(self, c, sq, gate=nn.Hardsigmoid, act=nn.ReLU):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)
            self.act, self.gate = act(), gate()

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))

    class InvRes(nn.Module):  # MobileNetV3 / EfficientNet inverted residual
        def __init__(self, cin, exp, cout, k, s, se, act, gate=nn.Hardsigmoid):
            super().__init__()
            layers = [] if exp == cin else [conv_bn(cin, exp, 1, act=act)]
            layers.append(conv_bn(exp, exp, k, s, groups=exp, act=act))
            if se:
                layers.append(SE(exp, max(8, exp // 4), gate=gate, act=nn.ReLU if act is nn.Hardswish else act))
            layers.append(conv_bn(exp, cout, 1, act=None))
            self.block = nn.Sequential(*layers)
            self.res = s == 1 and cin == cout

        def forward(self, x):
            y = self.block(x)
            return x + y if self.res else y

    class MobileNetV3Small(nn.Module):
        def __init__(self):
            super().__init__()
            hs = nn.Hardswish
            self.features = nn.Sequential(
                conv_bn(3, 8, 3, 2, act=hs),
                InvRes(8, 8, 8, 3, 2, True, nn.ReLU),
                InvRes(8, 36, 12, 3, 2, False, nn.ReLU),
                InvRes(12, 44, 12, 3, 1, False, nn.ReLU),
                InvRes(12, 48, 20, 5, 2, True, hs),
                InvRes(20, 120, 20, 5, 1, True, hs),
                InvRes(20, 72, 24, 5, 1, True, hs),
                conv_bn(24, 144, 1, act=hs))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(144, 256), nn.Hardswish(), nn.Linear(256, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class Basic(nn.Module):  # ResNet BasicBlock
        def __init__(self, cin, cout, s):
            super().__init__()
            self.c1, self.c2 = conv_bn(cin, cout, 3, s), conv_bn(cout, cout, 3, 1, act=None)
            self.down = conv_bn(cin, cout, 1, s, act=None) if (s != 1 or cin != cout) else None
            self.relu = nn.ReLU()

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            return self.relu(self.c2(self.c1(x)) + idt)

    class ResNet18(nn.Module):
        def __init__(self, w=8):
            super().__init__()
            self.stem = nn.Sequential(conv_bn(3, w, 7, 2), nn.MaxPool2d(3, 2, 1))
            chans = [w, 2 * w, 4 * w, 8 * w]
            layers, cin = [], w
            for i, c in enumerate(chans):
                layers += [Basic(cin, c, 1 if i == 0 else 2), Basic(c, c, 1)]
                cin = c
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(8 * w, 10)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    class EfficientNetB0(nn.Module):
        def __init__(self):
            super().__init__()
            si = nn.SiLU
            cfg = [(16, 1, 8, 3, 1), (8, 6, 12, 3, 2), (12, 6, 12, 3, 1), (12, 6, 20, 5, 2), (20, 6, 40, 3, 2),
                   (40, 6, 56, 5, 1)]
            self.stem = conv_bn(3, 16, 3, 2, act=si)
            self.blocks = nn.Sequential(*[InvRes(cin, cin * e, cout, k, s, True, si, gate=nn.Sigmoid)
                                          for cin, e, cout, k, s in cfg])
            self.head = conv_bn(56, 160, 1, act=si)
            self.fc = nn.Linear(160, 10)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(self.blocks(self.stem(x))), 1), 1))

    class FaceEmbedder(nn.Module):  # MobileFaceNet/SFace-like: conv-BN-PReLU, depthwise, linear GDC, BN1d
        def __init__(self):
            super().__init__()
            p = nn.PReLU
            self.body = nn.Sequential(conv_bn(3, 16, 3, 2, act=p), conv_bn(16, 16, 3, 1, groups=16, act=p),
                                      conv_bn(16, 32, 1, act=p), conv_bn(32, 32, 3, 2, groups=32, act=p),
                                      conv_bn(32, 64, 1, act=p), conv_bn(64, 64, 3, 2, groups=64, act=p),
                                      conv_bn(64, 64, 1, act=p))
            self.gdc = nn.Sequential(nn.Conv2d(64, 64, 7, 1, 0, groups=64, bias=False), nn.BatchNorm2d(64))  # GDC
            self.fc = nn.Linear(64 * 1 * 1, 32)
            self.bn = nn.BatchNorm1d(32)

        def forward(self, x):
            y = self.gdc(self.body(x))  # 56 -> 7 -> 1
            return self.bn(self.fc(torch.flatten(y, 1)))

    return {"mobilenet_v3_small": (MobileNetV3Small, 96), "resnet18": (ResNet18, 64),
            "efficientnet_b0": (EfficientNetB0, 64), "face_embedder_prelu": (FaceEmbedder, 56)}


def synthetic_images(n: int, size: int, seed: int) -> np.ndarray:
    """NCHW float32 in roughly [-2, 2] (ImageNet-normalised-like smooth random images)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1.5, 1.5, (n, 3, 4, 4)).astype(np.float32)
    img = np.repeat(np.repeat(base, -(-size // 4), 2), -(-size // 4), 3)[:, :, :size, :size]
    return (img + rng.normal(0, 0.3, img.shape)).astype(np.float32)


def build(name: str, seed: int = 0):
    """The fixture model ``name`` in eval mode, BatchNorm statistics re-estimated."""
    import torch

    cls, size = _nets()[name]
    torch.manual_seed(seed)
    m = cls()
    for mod in m.modules():
        if isinstance(mod, torch.nn.PReLU):
            with torch.no_grad():
                mod.weight.uniform_(0.05, 0.4)
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.momentum = None  # cumulative average over the passes below
            mod.reset_running_stats()
    m.train()
    with torch.no_grad():
        for i in range(4):
            m(torch.from_numpy(synthetic_images(16, size, 100 + i)))
    return m.eval(), size


def export(name: str, path: Path) -> dict:
    import torch

    m, size = build(name)
    x = torch.from_numpy(synthetic_images(1, size, 7))
    torch.onnx.export(m, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=OPSET,
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False, do_constant_folding=True)
    return {"file": path.name, "input_shape": [1, 3, size, size], "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size}


def check() -> int:
    """The committed files compute what the models built here compute (onnxruntime vs torch)."""
    import onnxruntime as ort
    import torch

    info = json.loads((HERE / "fixtures.json").read_text())
    print(f"fixtures made with torch {info['torch']}; this is torch {torch.__version__}")
    bad = 0
    for name in _nets():
        m, size = build(name)
        x = synthetic_images(2, size, 11)
        with torch.no_grad():
            ref = m(torch.from_numpy(x)).numpy()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        got = ort.InferenceSession(str(HERE / f"{name}.onnx"), so, providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0]
        err = float(np.abs(ref - got).max())
        ok = err <= 1e-4 * max(1.0, float(np.abs(ref).max()))
        bad += not ok
        print(f"{name}: max |torch - onnxruntime(committed file)| = {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


def main() -> int:
    import torch

    if "--check" in sys.argv[1:]:
        return check()
    info = {"torch": torch.__version__, "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)", "models": {}}
    for name in _nets():
        info["models"][name] = export(name, HERE / f"{name}.onnx")
        print(name, info["models"][name])
    (HERE / "fixtures.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
