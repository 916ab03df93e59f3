"""The default detector: a small residual CNN on neighbouring-pixel relationships (NPR).

NPR (Tan et al., CVPR 2024): generators upsample, and upsampling ties each pixel to its
neighbours within 2 x 2 blocks. ``x - up(down(x))`` (nearest neighbour, factor 2) keeps exactly
that relationship and removes the picture's content, so a small network trained from scratch
on it generalises across generators better than one that sees the picture. The network is
fully convolutional with global pooling: it scores crops of any size; an image is scored on
several crops of the training size and the crops' raw scores are averaged.

The network may also see the picture itself beside the residual (``inputs="npr+rgb"``). On
small, already downscaled pictures such as CIFAKE's 32 x 32, downscaling has erased most
upsampling traces and colour and texture carry what is left: there, seeing both raised the
validation AUC from 0.957 to 0.975 at equal training (2 epochs on 12,000 pictures; NPR alone
0.957, the picture alone 0.964).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigcguard.detectors.base import DETECTORS, Calibration, Detector, TrainOptions
from aigcguard.detectors.data import TrainingSet


def npr(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W in [0, 1] (H, W even) -> the NPR residual, same shape."""
    down = x[:, :, ::2, ::2]
    return x - down.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


#: what the network sees: the NPR residual alone, or the residual and the picture
INPUTS = ("npr", "npr+rgb")


class NprNet(nn.Module):
    """NPR residual (and the picture, with ``inputs="npr+rgb"``) -> stem -> three residual
    stages (widths ``widths``) -> global mean and max pooling -> one logit. About 0.7 M
    parameters at the default widths."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), inputs: str = "npr"):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, not {inputs!r}")
        w0, w1, w2 = widths
        self.widths = tuple(widths)
        self.inputs = inputs
        cin = 6 if inputs == "npr+rgb" else 3
        self.stem = nn.Sequential(
            nn.Conv2d(cin, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU()
        )
        self.stages = nn.Sequential(
            _Block(w0, w0, 1),
            _Block(w0, w1, 2),
            _Block(w1, w1, 1),
            _Block(w1, w2, 2),
            _Block(w2, w2, 1),
        )
        self.head = nn.Linear(2 * w2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W float in [0, 1] -> B logits."""
        z = npr(x) * 4.0  # residuals are small: scale to a unit-ish range
        if self.inputs == "npr+rgb":
            z = torch.cat([z, x - 0.5], dim=1)
        f = self.stages(self.stem(z))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


def crops(image: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """Up to ``n`` crops of ``size`` x ``size`` on an even grid over a uint8 3 x H x W image
    (deterministic, so a score is reproducible); an image smaller than ``size`` is padded by
    reflection (a tiny image is still scored, on what it has)."""
    _, h, w = image.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        mode = "reflect" if ph < h and pw < w else "replicate"
        image = F.pad(image[None].float(), (0, pw, 0, ph), mode=mode)[0].to(torch.uint8)
        _, h, w = image.shape
    per_side = max(1, int(np.ceil(np.sqrt(n))))
    # Origins on even pixels keep the 2 x 2 grid NPR looks at aligned with the image's.
    ys = sorted({int(v) // 2 * 2 for v in np.linspace(0, h - size, per_side).round()})
    xs = sorted({int(v) // 2 * 2 for v in np.linspace(0, w - size, per_side).round()})
    if n == 1:
        ys, xs = [(h - size) // 4 * 2], [(w - size) // 4 * 2]
    boxes = [(y, x) for y in ys for x in xs][:n]
    return torch.stack([image[:, y : y + size, x : x + size] for y, x in boxes])


@DETECTORS.register("npr")
class NprDetector(Detector):
    kind = "npr"

    def __init__(
        self,
        net: NprNet,
        *,
        crop: int = 32,
        n_crops: int = 9,
        calibration: Calibration | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(calibration)
        self.net = net.eval().to(device)
        self.crop = crop
        self.n_crops = n_crops
        self.device = torch.device(device)

    @torch.inference_mode()
    def raw_scores(self, images: Sequence[torch.Tensor], batch: int = 256) -> np.ndarray:
        if not len(images):
            return np.zeros(0)
        stacks = [crops(im, self.crop, self.n_crops) for im in images]
        counts = [len(s) for s in stacks]
        flat = torch.cat(stacks)
        logits = torch.cat(
            [
                self.net(flat[i : i + batch].to(self.device).float() / 255.0).float().cpu()
                for i in range(0, len(flat), batch)
            ]
        )
        return np.array([float(part.mean()) for part in logits.split(counts)])

    def state(self) -> dict:
        return {
            "widths": list(self.net.widths),
            "inputs": self.net.inputs,
            "crop": self.crop,
            "n_crops": self.n_crops,
            "weights": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> NprDetector:
        """:func:`~aigcguard.detectors.npr_training.train_npr` on ``data``. Settings:
        ``epochs`` (6), ``crop`` (64), ``inputs`` ("npr+rgb"), ``init`` (a detector to start
        from: ``default`` or a path). It saves ``options.out`` itself, with ``OUT.ckpt``
        beside it after every epoch, so a rerun resumes."""
        from aigcguard.detectors.api import load
        from aigcguard.detectors.npr_training import TrainConfig, train_npr
        from aigcguard.device import pick_device

        s = options.settings
        cfg = TrainConfig(
            crop=s.get("crop", 64),
            epochs=s.get("epochs", 6),
            seed=options.seed,
            target_fpr=options.target_fpr,
            inputs=s.get("inputs", "npr+rgb"),
        )
        return train_npr(
            data.arrays("train"),
            data.part_labels("train"),
            data.arrays("val"),
            data.part_labels("val"),
            out=options.out,
            cfg=cfg,
            device=pick_device(options.device),
            init=load(s["init"]) if s.get("init") else None,
            log=options.log,
        )

    @classmethod
    def from_state(cls, state: dict, calibration: Calibration) -> NprDetector:
        net = NprNet(state["widths"], state.get("inputs", "npr"))
        net.load_state_dict(state["weights"])
        return cls(
            net, crop=int(state["crop"]), n_crops=int(state["n_crops"]), calibration=calibration
        )
