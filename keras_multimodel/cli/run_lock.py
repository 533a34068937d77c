"""One `train` process per run directory: an advisory lock on `output_dir/.lock`."""

import contextlib
import fcntl
import os

from keras_multimodel.errors import DataError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(output_dir):
    """Holds the run directory's lock while the block runs.

    A second process that asks for it is refused with a one-line error naming the
    holder's process id. The lock is the operating system's (`flock`), so it dies
    with its process: the lock file of a killed run (a stale one) is simply taken
    over.
    """
    path = output_dir / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DataError(
                f"{output_dir} is in use by another train run (process {holder}); wait for it "
                "to finish, or train into another --output_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
