"""A small residual CNN that reads the whole picture: the ``residual-cnn`` detector kind.

What it looks at: the picture less its nearest-neighbour 2x down-and-up copy (the
neighbouring-pixel relationships of NPR, Tan et al. 2024: a generator's upsampling layers
leave them unlike a camera's), through five convolution blocks (:data:`LAYERS`: 24 channels
4 x 4 stride 2, aligned with the 2 x 2 cells the residual lives in, then 32/2, 64/2, 64,
128/2 with 3 x 3 kernels; 138,000 parameters), averaged over every position of the picture
and read by one linear unit. Fully convolutional: a score is the mean over the whole picture,
not a few crops. Pictures with a long side above :data:`MAX_SIDE` are shrunk to it first
(antialiased): a 1024 px picture is read at half size, within the downscales it trained on,
and a score costs what a check can afford (22 ms at 512 px, 26 ms at 1024 px on the
development machine's two cores). The layers are light for the same reason: the first design
(six 3 x 3 blocks from full resolution, 32 to 128 channels) took about 70 ms at 512 px.

Status (issue 21): a candidate, not shipped. Under leave-one-family-out CV on the wild set
(bench/detector_cnn.py, bench/results/detector_cnn.md) it reached AUC 0.62 pooled under
*platform* (0.73 the mean of the families), below the spectral features retrained the same
way (0.72, 0.79), and its thresholds did not hold on unseen sources (2.3% to 5.1% of real
photos flagged at a threshold set for 1%). Trained on 1,200 steps of 32 crops on a CPU; a
GPU session can try larger models and longer training with the same bench.

How it learns without the wild set's shortcuts (file size, JPEG tables, sizes): every training
sample is a random crop of :data:`TRAIN_CROP` px, with probability 1/2 after a bicubic
downscale by a factor drawn from [0.5, 1], flipped half the time, then JPEG at a quality drawn
from 60..95 -- the same *common re-encoding* whatever the class, and the crop's offset is
random, so an original's JPEG block grid falls anywhere. Batches hold as many real as
generated crops. AdamW, one-cycle learning rate (peak 2e-3), :data:`STEPS` steps of
:data:`BATCH` crops. These settings were fixed before any grouped result was seen and are not
tuned on the wild set (bench/detector_cnn.py reports them under leave-one-family-out CV).

Training (:func:`train_network`) saves a checkpoint every 100 steps beside ``out`` and resumes
from it; what it ran on (device, threads, seconds) goes into the detector's ``training``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from aigcguard.budget import bounded_size
from aigcguard.detectors.base import (
    DETECTORS,
    Calibration,
    Detector,
    TrainOptions,
    fit_calibration,
)
from aigcguard.detectors.data import TrainingError, TrainingSet
from aigcguard.detectors.npr import npr
from aigcguard.fileio import atomic_write
from aigcguard.perturb import jpeg

#: pictures with a longer side are shrunk (antialiased) first: a phone's 4,000 px photo then
#: costs what a shared copy does
MAX_SIDE = 512
TRAIN_CROP = 96
BATCH = 32
STEPS = 1200
PEAK_LR = 2e-3
#: (channels, kernel, stride) of each convolution block
LAYERS = ((24, 4, 2), (32, 3, 2), (64, 3, 2), (64, 3, 1), (128, 3, 2))
#: JPEG qualities of the common re-encoding (inclusive)
QUALITIES = (60, 95)
CHECKPOINT_EVERY = 100


class ResidualNet(nn.Module):
    """The network (module docstring). Input: N x 3 x H x W floats in [0, 1], H and W even;
    output: N raw scores (logits, higher = generated)."""

    def __init__(self, layers: Sequence[Sequence[int]] = LAYERS):
        super().__init__()
        blocks, c = [], 3
        for w, k, s in layers:
            # padding 1: a stride-2 block halves the side (rounding up for kernel 3)
            blocks += [nn.Conv2d(c, w, k, s, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
            c = w
        self.layers = tuple(tuple(int(v) for v in layer) for layer in layers)
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x4: the residual of [0, 1] pixels is small; this puts it near unit scale
        return self.head(self.features(npr(x) * 4.0).mean((2, 3)))[:, 0]


def common_reencoding(arr: np.ndarray, rng: np.random.Generator, crop: int = TRAIN_CROP):
    """One training sample of an H x W x 3 uint8 picture (module docstring): the same
    distribution of downscale, crop, flip and JPEG quality whatever its class."""
    h, w = arr.shape[:2]
    if rng.random() < 0.5:
        s = rng.uniform(0.5, 1.0)
        size = (max(crop, round(w * s)), max(crop, round(h * s)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))
        h, w = arr.shape[:2]
    if h < crop or w < crop:
        arr = np.asarray(Image.fromarray(arr).resize((max(w, crop), max(h, crop)), Image.BICUBIC))
        h, w = arr.shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    arr = arr[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return jpeg(np.ascontiguousarray(arr), int(rng.integers(QUALITIES[0], QUALITIES[1] + 1)))


def _batch(images, idx, rng, crop) -> torch.Tensor:
    x = np.stack([common_reencoding(images[i], rng, crop) for i in idx])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def _keep(ckpt: Path, parts, steps: int, n: int, done: int, seconds: float) -> None:
    """Write the checkpoint: the network, optimiser and schedule after ``done`` steps."""
    net, opt, sched = parts
    state = {"steps": steps, "n": n, "step": done, "seconds": seconds}
    state |= {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
    with atomic_write(ckpt) as f:
        torch.save(state, f)


def _resume(ckpt: Path | None, parts, steps: int, n: int, device, log) -> tuple[int, float]:
    """Load a checkpoint of the same run (as many steps, as many pictures) into ``parts``;
    returns the step to go on from and the seconds already spent (0, 0.0 without one)."""
    if ckpt is None or not ckpt.is_file():
        return 0, 0.0
    state = torch.load(ckpt, map_location=device, weights_only=False)
    if state.get("steps") != steps or state.get("n") != n:
        return 0, 0.0  # another run's: started afresh, overwritten at the next checkpoint
    net, opt, sched = parts
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    if log:
        log(f"resumed from {ckpt} at step {state['step']}/{steps}")
    return state["step"], state["seconds"]


def train_network(
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    steps: int = STEPS,
    batch: int = BATCH,
    crop: int = TRAIN_CROP,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[ResidualNet, dict]:
    """Train a :class:`ResidualNet` on H x W x 3 uint8 ``images`` (label 1 = generated) and
    return it (in eval mode, on the CPU) with what the run did. ``checkpoint``: a file kept
    every :data:`CHECKPOINT_EVERY` steps; a later call with the same file resumes (the
    sampling stream resumes with it, so a resumed run equals an uninterrupted one)."""
    labels = np.asarray(labels)
    real, gen = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if not len(real) or not len(gen):
        raise TrainingError("training the residual CNN needs real and generated pictures")
    if batch < 2 or batch % 2:
        raise ValueError(f"batch must be an even number of at least 2, not {batch}")
    device = torch.device(device)
    torch.manual_seed(seed)
    net = ResidualNet().to(device)
    opt = torch.optim.AdamW(net.parameters(), PEAK_LR, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, PEAK_LR, total_steps=steps)
    ckpt = Path(checkpoint) if checkpoint else None
    start, seconds = _resume(ckpt, (net, opt, sched), steps, len(labels), device, log)
    half = batch // 2
    t0, loss_sum = time.perf_counter(), 0.0
    for step in range(start, steps):
        # one stream per step: resuming at any step draws what the uninterrupted run drew
        rng = np.random.default_rng([seed, step])
        idx = np.concatenate([rng.choice(real, half), rng.choice(gen, half)])
        x = _batch(images, idx, rng, crop).to(device)
        y = torch.from_numpy(labels[idx].astype(np.float32)).to(device)
        net.train()
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += float(loss.detach())
        done = step + 1
        if done % CHECKPOINT_EVERY == 0 or done == steps:
            if ckpt:
                spent = seconds + time.perf_counter() - t0
                _keep(ckpt, (net, opt, sched), steps, len(labels), done, spent)
            if log:
                n = (done - 1) % CHECKPOINT_EVERY + 1
                log(f"step {done}/{steps}: loss {loss_sum / n:.3f}")
            loss_sum = 0.0
    seconds += time.perf_counter() - t0
    info = {
        "steps": steps,
        "batch": batch,
        "crop": crop,
        "seed": seed,
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "pictures": {"real": len(real), "generated": len(gen)},
    }
    return net.eval().cpu(), info


def _prepared(image: torch.Tensor) -> torch.Tensor:
    """uint8 3 x H x W -> float 1 x 3 x H' x W' in [0, 1]: the long side at most
    :data:`MAX_SIDE` (antialiased), both sides even (the last row/column dropped). A large
    picture is shrunk one plane at a time: the float copy of a 64 MP plane is 256 MB, of the
    whole picture 768 MB (the result is the same)."""
    h, w = image.shape[-2:]
    if max(h, w) <= MAX_SIDE:
        x = image[None].float() / 255.0
    else:
        size = bounded_size(h, w, short=MAX_SIDE, max_long=MAX_SIDE, min_side=2, grow=False)
        planes = [
            F.interpolate(
                plane[None, None].float() / 255.0,
                size=size,
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            for plane in image
        ]
        x = torch.cat(planes, dim=1).clamp(0.0, 1.0)
    h, w = x.shape[-2:]
    return x[..., : h - h % 2, : w - w % 2]


@DETECTORS.register("residual-cnn")
class ResidualCnnDetector(Detector):
    """The kind (module docstring). ``min_side`` 128: under it the picture is a thumbnail,
    outside what it was trained and measured on."""

    kind = "residual-cnn"
    min_side = 128

    def __init__(
        self,
        net: ResidualNet,
        calibration: Calibration | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(calibration)
        self.net = net.eval().to(device)
        self.device = torch.device(device)

    @torch.inference_mode()
    def raw_scores(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        # one picture at a time: sizes differ, and a whole picture is already a batch's work
        out = np.zeros(len(images))
        for i, im in enumerate(images):
            out[i] = float(self.net(_prepared(im).to(self.device)).float().cpu()[0])
        return out

    def state(self) -> dict:
        return {
            "layers": [list(layer) for layer in self.net.layers],
            "weights": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict, calibration: Calibration) -> ResidualCnnDetector:
        net = ResidualNet(state["layers"])
        net.load_state_dict(state["weights"])
        return cls(net, calibration)

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> ResidualCnnDetector:
        """:func:`train_network` on ``data``'s training part, calibrated on its validation
        part. Settings: ``steps`` (:data:`STEPS`), ``batch``, ``crop``; the checkpoint is
        ``OUT.ckpt`` (a rerun resumes)."""
        from aigcguard.device import pick_device

        s = options.settings
        out = Path(options.out)
        net, info = train_network(
            data.arrays("train"),
            data.part_labels("train"),
            steps=int(s.get("steps", STEPS)),
            batch=int(s.get("batch", BATCH)),
            crop=int(s.get("crop", TRAIN_CROP)),
            seed=options.seed,
            device=pick_device(options.device),
            checkpoint=out.with_name(out.name + ".ckpt"),
            log=options.log,
        )
        det = cls(net)
        raw = det.raw_scores(data.tensors("val"))
        det.calibration = fit_calibration(
            raw, data.part_labels("val"), target_fpr=options.target_fpr
        )
        det.training = info
        return det
