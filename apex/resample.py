"""Block-by-block resampling with the windowed-sinc filter of ``torchaudio.functional.resample``
(``width`` zeros padded left, ``width + orig`` right, one strided convolution), keeping only the
samples a future frame needs: equal to it up to float32 rounding (about 1e-6 of full scale)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class StreamingResampler:
    """Resample a mono signal from ``orig_freq`` to ``new_freq`` Hz: :meth:`push` each ``[N]``
    float32 piece in order, then :meth:`finish` once."""

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        import torchaudio.transforms as T

        # transforms.Resample builds the kernel functional.resample uses with the same defaults
        # (lowpass_filter_width 6, rolloff 0.99, sinc_interp_hann).
        reference = T.Resample(orig_freq, new_freq)
        gcd = math.gcd(int(orig_freq), int(new_freq))
        self._orig, self._new = int(orig_freq) // gcd, int(new_freq) // gcd
        self._kernel: torch.Tensor = reference.kernel  # [new, 1, 2 * width + orig]
        self._width = int(reference.width)
        self._size = self._kernel.shape[-1]
        self._pending = torch.zeros(self._width)  # the left padding, then unread input
        self._seen = 0
        self._out: list[torch.Tensor] = []

    def push(self, piece: torch.Tensor) -> None:
        """Feed the next ``[N]`` float32 input samples."""
        self._seen += piece.numel()
        self._pending = torch.cat([self._pending, piece.to(torch.float32)])
        self._drain()

    def finish(self) -> torch.Tensor:
        """The whole output, ``[ceil(new_freq * N_total / orig_freq)]`` float32 samples."""
        self._pending = torch.cat([self._pending, torch.zeros(self._width + self._orig)])
        self._drain()
        out = torch.cat(self._out) if self._out else torch.zeros(0)
        self._out = []
        return out[: math.ceil(self._new * self._seen / self._orig)]

    def _drain(self) -> None:
        frames = (self._pending.numel() - self._size) // self._orig + 1
        if frames <= 0:
            return
        used = (frames - 1) * self._orig + self._size
        window = self._pending[:used].reshape(1, 1, used)
        resampled = F.conv1d(window, self._kernel, stride=self._orig)  # [1, new, frames]
        self._out.append(resampled[0].transpose(0, 1).reshape(-1))
        self._pending = self._pending[frames * self._orig :].clone()  # free the consumed part
