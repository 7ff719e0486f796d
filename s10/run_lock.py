"""One writer per run folder: an exclusive lock that a process holds on its run folder for as
long as it writes there (train.py for its run, the notebook's kernel for as long as it lives), so
that a second process on the same folder stops before touching it."""
import atexit
import contextlib
import os
from pathlib import Path

from s10.config import S10Error

try:
    import fcntl
except ImportError:  # Windows has no flock: runs there are not locked
    fcntl = None

LOCK = ".lock"  # in the run folder; it holds the PID of the process that writes the folder


class FolderInUse(S10Error):
    """Another process holds the run folder's lock."""


def _holder(fd):
    """The PID written in the lock file, or None while its holder has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _acquire(path):
    """An open descriptor of `path` holding its flock; FolderInUse if another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            by = f"process {pid}" if pid else "another process"
            raise FolderInUse(f"{path.parent} is in use by {by}, which is writing a run there "
                              f"(its lock: {path}). Wait for it to end or stop it, or choose "
                              "another folder") from None
        # the holder before us removes the file as it ends: if it did so between our open and
        # our flock, we hold a lock on a file nobody else will open, so open the path again
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


# run folder (resolved) -> the descriptor holding its lock, for the folders this process holds:
# a process is one writer, so it may take a folder it already holds again (train.py holds its
# folder and then opens the run in it; the notebook opens its run again when its cells are re-run)
_HELD = {}


def _take(run_dir):
    """Hold run_dir's lock; False if this process already held it (nothing to release then)."""
    key = run_dir.resolve()
    if key in _HELD:
        return False
    fd = _acquire(run_dir / LOCK)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd
    return True


def _release(run_dir):
    fd = _HELD.pop(Path(run_dir).resolve(), None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        (Path(run_dir) / LOCK).unlink()  # while still holding the lock: see _acquire
    os.close(fd)


@contextlib.contextmanager
def run_folder_lock(run_dir):
    """Hold `run_dir`'s lock (creating the folder) while the block runs.

    The lock is flock(2) on run_dir/.lock, which the kernel releases when the process ends,
    however it ends: the file a killed run leaves behind blocks nobody. Folders this call
    created are removed again if they are still empty at the end (a run refused at its start).
    """
    run_dir = Path(run_dir)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    try:
        taken = _take(run_dir)
    except FolderInUse:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        if taken:
            _release(run_dir)
        _remove_empty(created)


def hold_run_folder(run_dir):
    """Hold `run_dir`'s lock (an existing folder) until this process ends: the notebook's run,
    whose kernel writes the folder from one cell to the next. FolderInUse if another process
    holds it."""
    run_dir = Path(run_dir)
    if fcntl is not None and _take(run_dir):
        atexit.register(_release, run_dir)


def _remove_empty(folders):
    """Remove `folders` (deepest first) as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote there) or gone: leave it and those above
            return
