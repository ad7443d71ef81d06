"""Progress bars for long work: labelled, and with a remaining-time estimate only once it means something."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

# Without the remaining time: the first steps of a run include warm-up (loading, kernel selection,
# a first long batch), and an estimate made from them alone reads hours.
_SETTLING = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class ProgressBar(tqdm):
    """A tqdm bar that shows the remaining time from its `settle`-th separate step on.

    Steps that arrive together (the clips of one decoded batch) count once: a step counts when at
    least `gap` seconds have passed since the last one that counted. The rate is the average over
    the whole run (tqdm's smoothing 0), which batched work needs: per-update rates jump between a
    batch's long first clip and its instant rest.
    """

    def __init__(self, *args, settle: int = 3, gap: float = 0.05, **kwargs):
        self._counted, self._settle, self._gap, self._last = 0, settle, gap, None
        kwargs.setdefault("smoothing", 0)
        super().__init__(*args, bar_format=_SETTLING, **kwargs)

    def update(self, n: int = 1):
        now = time.monotonic()
        if self._last is None or now - self._last >= self._gap:
            self._counted += 1
            self._last = now
            if self._counted == self._settle:
                self.bar_format = None  # tqdm's own: with the rate and the remaining time
        return super().update(n)
