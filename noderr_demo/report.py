"""Step bookkeeping for the demo: each step prints as it happens and lands in the summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class DemoFailure(RuntimeError):
    """A step did not happen; the demo exits non-zero with this message."""


@dataclass
class StepResult:
    journey: str
    title: str
    seconds: float
    detail: str = ""
    ok: bool = True


@dataclass
class DemoReport:
    steps: list[StepResult] = field(default_factory=list)
    where_to_look: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def step(self, journey: str, title: str) -> Iterator[StepResult]:
        result = StepResult(journey, title, 0.0)
        print(f"[{journey}] {title} …", flush=True)
        started = time.monotonic()
        try:
            yield result
        except BaseException as exc:
            result.ok = False
            result.detail = result.detail or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            result.seconds = time.monotonic() - started
            self.steps.append(result)
            mark = "ok " if result.ok else "FAILED"
            suffix = f" — {result.detail}" if result.detail else ""
            print(f"[{journey}]   {mark} ({result.seconds:.1f}s){suffix}", flush=True)

    def print_summary(self) -> None:
        print("\n" + "=" * 78)
        print("Noderr demo summary")
        print("=" * 78)
        journeys: dict[str, list[StepResult]] = {}
        for s in self.steps:
            journeys.setdefault(s.journey, []).append(s)
        for journey, steps in journeys.items():
            total = sum(s.seconds for s in steps)
            ok = all(s.ok for s in steps)
            print(f"\n{journey}: {'complete' if ok else 'INCOMPLETE'} — {len(steps)} steps, {total:.1f}s")
            for s in steps:
                print(f"  {'✓' if s.ok else '✗'} {s.title:<52} {s.seconds:6.1f}s  {s.detail}")
        if self.where_to_look:
            print("\nWhere to look:")
            for what, where in self.where_to_look.items():
                print(f"  {what:<22} {where}")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll `predicate` until it returns a truthy value; raise DemoFailure on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not there yet
            last_exc = exc
        time.sleep(interval)
    raise DemoFailure(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))
