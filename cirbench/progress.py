"""Progress of long work: a bar on a terminal, a line every ``every`` seconds otherwise (a CI log, a file, a pipe),
so a long run is never silent."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``update(n)`` as work gets done. ``enabled``: None = a bar on a terminal, lines elsewhere; False = silent."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, unit: str = "img", enabled: bool | None = None,
                 stream=None, every: float = 30.0):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.done, self._start_done = initial, initial
        self._start = self._last = time.monotonic()
        self._bar = None
        self._lines = enabled is not False and not _tty(self.stream)
        if enabled is not False and not self._lines:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and time.monotonic() - self._last >= self.every:
            self._line()

    def _line(self) -> None:
        self._last = now = time.monotonic()
        rate = (self.done - self._start_done) / max(now - self._start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = f", about {_duration(left)} left" if left is not None else ""
        pct = 100 * self.done / self.total if self.total else 100.0
        print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f} %), {rate:.2f} {self.unit}/s{eta}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._lines and self.done > self._start_done and time.monotonic() - self._start >= self.every:
            self._line()  # the final count, for a run long enough to have printed lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
