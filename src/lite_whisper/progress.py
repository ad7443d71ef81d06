"""Progress bars for long work: labelled, and with a remaining-time estimate only once it means something."""

from __future__ import annotations

from tqdm.auto import tqdm

# Without the remaining time: the first steps of a run include warm-up (loading, kernel selection,
# a first long batch), and an estimate made from them alone reads hours.
_SETTLING = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class ProgressBar(tqdm):
    """A tqdm bar that shows its estimate of the remaining time from the `settle`-th step on."""

    def __init__(self, *args, settle: int = 3, **kwargs):
        self._steps, self._settle = 0, settle
        super().__init__(*args, bar_format=_SETTLING, **kwargs)

    def update(self, n: int = 1):
        self._steps += 1
        if self._steps == self._settle:
            self.bar_format = None  # tqdm's own: with the rate and the remaining time
        return super().update(n)
