"""The one way these tests wait: a condition polled until it holds, or a failure that says what
never happened and what was last seen."""

import time


def wait_until(condition, seconds: float, what, every: float = 0.05, ignoring=()):
    """Calls `condition()` until it returns a truthy value, which is returned; past `seconds`
    (it is always called at least once) fails with `what` (a text, or a function that makes one
    then, for messages that cost something such as a container's log) and the last value or
    exception. Exceptions of the `ignoring` types count as not yet; any other one fails at once."""
    deadline = time.monotonic() + seconds
    while True:
        error = None
        try:
            value = condition()
        except ignoring as caught:
            value, error = None, caught
        if value:
            return value
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            if error is not None:
                last = f" (last: {type(error).__name__}: {error})"
            elif value is not None and value is not False:
                last = f" (last: {value!r})"
            else:
                last = ""
            raise AssertionError(f"{text}: not within {seconds:g} s{last}") from error
        time.sleep(every)
