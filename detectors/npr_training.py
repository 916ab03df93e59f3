"""Training the NPR detector without the known shortcuts; seeded, resumable, with progress.

Shortcuts a real-versus-generated detector learns if it can: file format (real JPEG against
generated PNG), size, and resizing traces. So every training sample, whatever its class, goes
through the same random pipeline: a random crop (never a resize of the whole picture to the
network's size), a random rescale when the picture is large enough, blur, and a JPEG re-encode
at a random quality, all drawn from the same distributions for both classes. The validation
split is scored on deterministic crops; the calibration and the threshold (for a stated
false-positive rate) are fitted on it at the end.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from tqdm import tqdm

from aigcguard.detectors.base import fit_calibration
from aigcguard.detectors.npr import NprDetector, NprNet
from aigcguard.fileio import atomic_write


@dataclass(frozen=True)
class TrainConfig:
    crop: int = 32
    epochs: int = 6
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    widths: tuple[int, int, int] = (32, 64, 128)
    inputs: str = "npr+rgb"  # see aigcguard.detectors.npr.INPUTS
    jpeg_p: float = 0.6  # share of samples re-encoded, quality uniform in jpeg_quality
    jpeg_quality: tuple[int, int] = (50, 100)
    blur_p: float = 0.2
    rescale_p: float = 0.3
    target_fpr: float = 0.05
    seed: int = 0


def augment(arr: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """One training view of an H x W x 3 uint8 picture: crop, maybe rescale, blur, JPEG."""
    im = Image.fromarray(arr)
    if rng.random() < cfg.rescale_p and min(im.size) >= 2 * cfg.crop:
        f = rng.uniform(0.5, 1.0)
        im = im.resize(
            (max(cfg.crop, round(im.width * f)), max(cfg.crop, round(im.height * f))), Image.BICUBIC
        )
    w, h = im.size
    if w >= cfg.crop and h >= cfg.crop:
        x = int(rng.integers(0, w - cfg.crop + 1)) // 2 * 2
        y = int(rng.integers(0, h - cfg.crop + 1)) // 2 * 2
        im = im.crop((x, y, x + cfg.crop, y + cfg.crop))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < cfg.blur_p:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.0)))
    if rng.random() < cfg.jpeg_p:
        buf = io.BytesIO()
        im.save(
            buf,
            format="JPEG",
            quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)),
        )
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    out = np.asarray(im)
    if out.shape[0] != cfg.crop or out.shape[1] != cfg.crop:  # smaller than the crop: pad
        t = torch.from_numpy(np.array(out, np.uint8)).permute(2, 0, 1)[None].float()
        t = F.pad(t, (0, cfg.crop - out.shape[1], 0, cfg.crop - out.shape[0]), mode="replicate")
        out = t[0].permute(1, 2, 0).to(torch.uint8).numpy()
    return out


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def train_npr(
    train: Sequence[np.ndarray],
    train_labels: Sequence[int],
    val: Sequence[np.ndarray],
    val_labels: Sequence[int],
    *,
    out: str | Path,
    cfg: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    init: NprDetector | None = None,
    log=print,
) -> NprDetector:
    """Train, validate each epoch, calibrate, and save the detector to ``out``. A checkpoint
    ``out`` + ``.ckpt`` is written after every epoch; calling again with the same arguments
    resumes from it (the same seed gives the same run)."""
    out = Path(out)
    ckpt = out.with_name(out.name + ".ckpt")
    labels = np.asarray(train_labels, np.int64)
    vlabels = np.asarray(val_labels, np.int64)
    if set(labels.tolist()) != {0, 1} or set(vlabels.tolist()) != {0, 1}:
        raise ValueError("training and validation data need both classes (0 = real, 1 = generated)")
    torch.manual_seed(cfg.seed)
    net = NprNet(cfg.widths, cfg.inputs) if init is None else init.net
    device = torch.device(device)
    net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    start_epoch, history = _resume(ckpt, net, opt, sched, _config_dict(cfg, len(train)), log)
    detector = NprDetector(net, crop=cfg.crop, n_crops=1, device=device)
    val_tensors = [torch.from_numpy(np.array(a, np.uint8)).permute(2, 0, 1) for a in val]
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        losses = _train_epoch(net, opt, sched, train, labels, cfg, epoch, steps_per_epoch, device)
        net.eval()
        val_auc = _auc(detector.raw_scores(val_tensors), vlabels)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_auc": val_auc})
        with atomic_write(ckpt) as f:
            torch.save(
                {
                    "net": net.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": _config_dict(cfg, len(train)),
                },
                f,
            )
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, validation AUC {val_auc:.4f}")
    net.eval()
    raw = detector.raw_scores(val_tensors)
    try:
        detector.calibration = fit_calibration(raw, vlabels, target_fpr=cfg.target_fpr)
    except ValueError as exc:
        raise ValueError(
            f"training finished, but {exc} (validation AUC {_auc(raw, vlabels):.3f}): no "
            f"detector written to {out}; the trained weights are kept in {ckpt}"
        ) from None
    detector.n_crops = 9
    detector.training = {"history": history, "seconds": time.perf_counter() - started}
    detector.save(out)
    return detector


def _resume(ckpt: Path, net, opt, sched, config: dict, log) -> tuple[int, list[dict]]:
    """Load the checkpoint ``ckpt`` into the network, optimiser and schedule when there is
    one; returns (epochs already done, their history)."""
    if not ckpt.exists():
        return 0, []
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if state.get("config") != config:
        raise ValueError(
            f"{ckpt} was written by a run with other settings or data; rerun with the "
            "same options to resume, or delete it to start over"
        )
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    start_epoch, history = int(state["epoch"]), list(state["history"])
    log(f"resuming from {ckpt} after epoch {start_epoch}")
    return start_epoch, history


def _train_epoch(
    net: NprNet,
    opt,
    sched,
    train: Sequence[np.ndarray],
    labels: np.ndarray,
    cfg: TrainConfig,
    epoch: int,
    steps: int,
    device: torch.device,
) -> list[float]:
    """One pass over the training pictures in a seeded order; returns the batch losses."""
    rng = np.random.default_rng([cfg.seed, epoch])  # per epoch, so a resume is the same run
    order = rng.permutation(len(train))
    net.train()
    losses = []
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        file=sys.stderr,
        disable=None,
        leave=False,
    )
    for step in bar:
        idx = order[step * cfg.batch : (step + 1) * cfg.batch]
        x = np.stack([augment(train[i], cfg, rng) for i in idx])
        xb = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0).to(device)
        yb = torch.from_numpy(labels[idx]).float().to(device)
        loss = F.binary_cross_entropy_with_logits(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    return losses


def _config_dict(cfg: TrainConfig, n_train: int) -> dict:
    """What a checkpoint must match to be resumed (plain values: checkpoints load with
    ``weights_only``)."""
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()}
    d["n_train"] = n_train
    return d
