"""Fault injection around a job's real unit processor, for the failure-isolation tests.

``wrap(spec, log, fail_unit)`` returns the JobSpec with its processor factory wrapped: every unit that starts is
appended to ``log`` (a local file every simulated node can reach), and ``fail_unit`` (if given) always raises."""

from __future__ import annotations

import dataclasses
import functools
import os


class CountingProcessor:
    def __init__(self, make, log: str, fail_unit: str | None, delay_s: float = 0.0) -> None:
        self.inner = make()
        self.log, self.fail_unit, self.delay_s = log, fail_unit, delay_s

    def process(self, unit):
        with open(self.log, "a") as f:
            f.write(unit.unit_id + "\n")
        if unit.unit_id == self.fail_unit:
            raise RuntimeError(f"injected fault in {unit.unit_id}")
        if self.delay_s:
            import time

            time.sleep(self.delay_s)  # keeps units in flight long enough to lose a node under them
        return self.inner.process(unit)


def wrap(spec, log: str, fail_unit: str | None = None, delay_s: float = 0.0):
    return dataclasses.replace(spec, make_processor=functools.partial(CountingProcessor, spec.make_processor, log,
                                                                      fail_unit, delay_s))


def started(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [line.strip() for line in f if line.strip()]
