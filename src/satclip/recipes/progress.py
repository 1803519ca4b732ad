"""One progress display for a run of several stages: ``[3/5] pretraining ▕██████▏ 48% · 2:41 elapsed · ETA 2:55``.

Each stage has a weight, its expected seconds on a reference machine (measured once, see
:data:`satclip.recipes.demo.STAGES`), and reports the fraction of itself that is done; the display shows the
weighted fraction of the whole run, the time elapsed and the time left at the pace of the stages' work so far
(time between stages, such as the command starting, is not). Work an earlier run did and this one reuses (a
rerun) is done in no time: a step of at least :data:`REUSED_SHARE` of the run done :data:`REUSED_SPEEDUP` times
faster than its weight says is left out of the pace (a rerun's ETA was ~0 s with the evaluation still ahead).

On a terminal it is one line redrawn in place (tqdm); elsewhere (a log file, CI, a ``TERM=dumb`` terminal:
:func:`satclip.terminal.redraws`) it is a line per stage and at most one every :data:`LOG_EVERY` seconds within one.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: seconds between progress lines when the output is not a terminal
LOG_EVERY = 30.0
#: a step of progress of at least this share of the run, done this many times faster than its weight in seconds,
#: is an earlier run's work reused: it does not count towards the pace the ETA extrapolates
REUSED_SHARE, REUSED_SPEEDUP = 0.01, 20.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class StageProgress:
    """Progress over ``stages`` (name → weight), shown on ``stream`` (default ``sys.stderr``)."""

    def __init__(self, stages: dict[str, float], stream=None, *, clock=time.monotonic):
        if not stages or min(stages.values()) <= 0:
            raise ValueError(f"stages need positive weights, got {stages}")
        self.stages = dict(stages)
        self.total = sum(self.stages.values())
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.done_weight = 0.0  # of the finished stages
        self.current: str | None = None
        self.fraction = 0.0  # of the current stage
        self.last_line = -LOG_EVERY
        self.reused = 0.0  # weight of the steps reused from an earlier run (see REUSED_SHARE)
        self.worked, self.worked_seconds = 0.0, 0.0  # weight of the other steps, and the time they took
        self.last_step = (0.0, self.start)  # (weight done, clock) at the last step
        self.bar = self._terminal_bar()

    def _terminal_bar(self):
        from ..terminal import progress_bar, redraws

        if not redraws(self.stream) or importlib.util.find_spec("tqdm") is None:
            return None

        return progress_bar(total=1000, stream=self.stream, leave=True, bar_format="{desc} {bar}")

    @property
    def overall(self) -> float:
        """The fraction of the whole run done."""
        current = self.stages.get(self.current, 0.0) * self.fraction
        return min(1.0, (self.done_weight + current) / self.total)

    def status(self) -> str:
        """``[k/n] stage · 48% · 2:41 elapsed · ETA 2:55`` (no ETA before 1 % is done)."""
        return f"{self._label()} · {self._numbers()}"

    def _label(self) -> str:
        names = list(self.stages)
        k = names.index(self.current) + 1 if self.current in self.stages else len(names)
        return f"[{k}/{len(names)}] {self.current or 'done'}"

    def _numbers(self) -> str:
        elapsed = self.clock() - self.start
        done = self.overall
        eta = ""
        if self.worked >= 0.01 * self.total and done < 1:  # at the pace of the work this run did itself
            eta = f" · ETA {_clock(self.worked_seconds * (1 - done) * self.total / self.worked)}"
        return f"{100 * done:.0f}% · {_clock(elapsed)} elapsed{eta}"

    def _step(self) -> None:
        """Note the progress since the last step; a step an earlier run's work made (see :data:`REUSED_SHARE`)
        is left out of the pace."""
        weight, now = self.overall * self.total, self.clock()
        step, seconds = weight - self.last_step[0], now - self.last_step[1]
        if step >= REUSED_SHARE * self.total and seconds * REUSED_SPEEDUP < step:
            self.reused += step
        else:
            self.worked, self.worked_seconds = self.worked + step, self.worked_seconds + seconds
        self.last_step = (weight, now)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageProgress]:
        """Run stage ``name``; inside, :meth:`update` reports how much of it is done."""
        if name not in self.stages:
            raise KeyError(f"unknown stage {name!r}; stages: {', '.join(self.stages)}")
        self.current, self.fraction = name, 0.0
        self.last_step = (self.overall * self.total, self.clock())  # (time before a stage is no stage's work)
        self._show(force=True)
        yield self
        self.done_weight += self.stages[name]
        self.fraction = 0.0
        self._step()
        self._show(force=True, finished=True)

    def update(self, fraction: float) -> None:
        """The current stage is ``fraction`` (0–1) done."""
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self._step()
        self._show()

    def write(self, line: str) -> None:
        """A line of text above the display."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _show(self, force: bool = False, finished: bool = False) -> None:
        if self.bar is not None:
            self.bar.set_description_str(self._label(), refresh=False)
            self.bar.n = int(1000 * self.overall)
            self.bar.bar_format = "{desc} {bar} " + self._numbers()
            self.bar.refresh()
            return
        now = self.clock()
        if force or now - self.last_line >= LOG_EVERY:
            self.last_line = now
            print(f"{self._label()}{' done' if finished else ''} · {self._numbers()}", file=self.stream, flush=True)
