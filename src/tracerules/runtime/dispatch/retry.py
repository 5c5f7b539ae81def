"""One retry policy for everything that may fail for a while: exponential backoff (tenacity).

Actions. The dispatcher alone retries an action: `policy_of(config)` says how many attempts
one run makes (`1 + retries:`; a webhook's `attempts:` is its tries in all) and how long each
may take (`timeout:`); the waits between them double from 1 s (a webhook's `backoff:`) up to
30 s. An action type makes one attempt per call (a webhook sends one request), so retries
never multiply. The longest a run can take, `Policy.budget`, is derived from the same policy:
crash recovery waits that long before taking up an action nobody owns.

A failed action is also tried again later, on the same backoff measured in attempts (5 s, 10 s,
... at most 10 min), for as long as its event has not expired (`next_try`). The service loop's
wait for a store that refuses writes uses `quick_retries` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

T = TypeVar("T")

QUICK_FIRST_S: Final = 1.0  # first wait between two attempts of one run
QUICK_MOST_S: Final = 30.0
LATER_FIRST_S: Final = 5.0  # first wait before a failed action is tried again
LATER_MOST_S: Final = 600.0


def backoff(first: float, most: float) -> wait_exponential:
    """first, 2 first, 4 first, ... at most `most` seconds."""
    return wait_exponential(multiplier=first, min=first, max=most)


def wait_after(attempt: int, first: float = QUICK_FIRST_S, most: float = QUICK_MOST_S) -> float:
    """The wait after the `attempt`-th failure (1-based) under `backoff(first, most)`."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(backoff(first, most)(state))


def quick_retries(
    tries: int,
    failed: Callable[[Any], bool],
    sleep: Callable[[float], Any],
    first: float = QUICK_FIRST_S,
    within: float | None = None,
    on_retry: Callable[[int, float], None] | None = None,
) -> Retrying:
    """Call again while `failed(result)`, at most `tries` times (and not past `within` s);
    the last result is returned either way."""
    stop: stop_base = stop_after_attempt(max(1, tries))
    if within is not None:
        stop = stop | stop_before_delay(within)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.next_action.sleep)

    return Retrying(
        stop=stop,
        wait=backoff(first, QUICK_MOST_S),
        retry=retry_if_result(failed),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


@dataclass(frozen=True)
class Policy:
    """How one run of an action is attempted."""

    tries: int  # attempts in all
    timeout: float  # seconds one attempt may take
    first: float = QUICK_FIRST_S  # the wait after the first failure; it doubles

    def waits(self) -> list[float]:
        """The waits between the attempts, in order."""
        return [wait_after(n, self.first, QUICK_MOST_S) for n in range(1, self.tries)]

    @property
    def budget(self) -> float:
        """The longest a run can take: every attempt timing out, plus the waits."""
        return self.tries * self.timeout + sum(self.waits())


def policy_of(config: Any) -> Policy:
    """An action's policy, from its options: `retries:` (extra attempts), `timeout:`, and a
    webhook's `attempts:` (tries in all) and `backoff:` (first wait)."""
    tries = max(1 + int(config.retries), int(getattr(config, "attempts", 1)))
    first = float(getattr(config, "backoff", QUICK_FIRST_S))
    return Policy(tries, float(config.timeout), first)


def next_try(attempts: int, now: float, expires: float | None) -> float | None:
    """When a failed action runs again: after a backoff, if that is before its event
    expires; None means it has failed for good."""
    at = now + wait_after(attempts, LATER_FIRST_S, LATER_MOST_S)
    if expires is not None and at > expires:
        return None
    return at
