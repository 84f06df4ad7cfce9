"""Python threads started together, for the concurrency tests."""
from __future__ import annotations

import threading


def run_threads(worker, n: int):
    """worker(i) in n threads started together; re-raises the first exception."""
    start = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            start.wait()
            worker(i)
        except BaseException as exc:  # surfaced below, with its traceback
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
