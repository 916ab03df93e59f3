"""The SSIM guard: SSIM as scikit-image computes it, and the largest scale of a grey mark
that keeps a picture's SSIM above a floor, from window sums of the picture computed once."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _window_mean(t: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """7 x 7 uniform window means (B x C x H x W -> valid part), separably, every
    ``stride``-th window."""
    return F.avg_pool2d(F.avg_pool2d(t, (7, 1), stride=(stride, 1)), (1, 7), stride=(1, stride))


_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_COV = 49 / 48  # sample covariances, as scikit-image uses by default


def _ssim_map(ma, mb, va, vb, vab) -> torch.Tensor:
    return ((2 * ma * mb + _C1) * (2 * vab * _COV + _C2)) / (
        (ma * ma + mb * mb + _C1) * ((va + vb) * _COV + _C2)
    )


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (B x C x H x W, 0-255) as scikit-image computes it by default:
    7 x 7 uniform windows, sample covariances, the border of half a window left out."""
    a, b = a.float(), b.float()
    shift = a.mean(dim=(1, 2, 3), keepdim=True)  # variances in float32 need centred values
    ac, bc = a - shift, b - shift
    ma, mb = _window_mean(ac), _window_mean(bc)
    va = _window_mean(ac * ac) - ma * ma
    vb = _window_mean(bc * bc) - mb * mb
    vab = _window_mean(ac * bc) - ma * mb
    return _ssim_map(ma + shift, mb + shift, va, vb, vab).mean(dim=(1, 2, 3))


class _WindowStats:
    """SSIM(x, x + alpha * delta) for any per-image alpha and any grey mark delta (the same
    on every channel, B x H x W), from window sums of x computed once. Every fourth window
    in each direction: the mean over a sixteenth of the windows is SSIM to 3e-4 at most
    (measured on 13 benchmark photos; every other window: 1.3e-4), far inside the floor's
    margin over 0.98, at under half the cost of every other window."""

    stride = 4

    def __init__(self, x: torch.Tensor):
        # The centred picture is remade a channel at a time from the uint8 one whenever it is
        # needed: the same numbers, without holding float copies of the whole picture (768 MB
        # each at 64 MP; with the per-channel sums of the embedder's last step and of psnr,
        # `aigc watermark embed` of a 64 MP photo peaks at 2.6 GB instead of 4.4).
        self.x = x
        self.shift = x.float().mean(dim=(1, 2, 3), keepdim=True)
        self.ma = self._per_channel(lambda c: c)
        self.va = self._per_channel(lambda c: c * c) - self.ma * self.ma

    def _per_channel(self, f) -> torch.Tensor:
        """``_window_mean(f(centred picture))`` a channel at a time (windows never mix
        channels), so ``f``'s full-size result exists for one channel only."""
        shift, x = self.shift, self.x
        return torch.cat(
            [
                _window_mean(f(x[:, c : c + 1].float() - shift), self.stride)
                for c in range(x.shape[1])
            ],
            dim=1,
        )

    def scale_for(self, delta: torch.Tensor, floor: float) -> torch.Tensor:
        """The largest alpha <= 1 per image keeping SSIM(x, x + alpha delta) >= floor:
        1 - SSIM grows about as alpha squared, so proportional steps settle it."""
        ma, va = self.ma, self.va
        d = delta[:, None]
        md = _window_mean(d, self.stride)
        vd = _window_mean(d * d, self.stride) - md * md
        cad = self._per_channel(lambda c: c * d) - ma * md
        ma = ma + self.shift
        alpha = torch.ones(delta.shape[0], device=delta.device)
        for _ in range(3):
            al = alpha[:, None, None, None]
            vb = va + 2 * al * cad + al * al * vd
            value = _ssim_map(ma, ma + al * md, va, vb, va + al * cad)
            loss = (1 - value.mean(dim=(1, 2, 3))).clamp(min=1e-9)
            step = ((1 - floor) / loss).sqrt()
            if bool((step >= 1).all()) and bool((alpha == 1).all()):
                break  # the floor does not bind (most pictures): nothing to settle
            alpha = (alpha * step).clamp(max=1.0)
        return alpha
