"""Files written whole or not at all, pairs replaced together, with the user's normal file mode.

Every output of ours (checkpoints, ONNX models, engines and their sidecars, OpenVINO IRs, caches, annotation
files) is written to a temporary file beside its target and renamed over it, so a crash leaves the old file
or the new one, never half of either. ``tempfile.mkstemp`` makes its files 0600 and a rename keeps the mode,
so the temporary file first gets the mode a plain ``open()`` would have given (0666 less the umask).

A model and its companion (an engine and its sidecar, an IR's ``.xml`` and ``.bin``) are two renames, and a
crash between them would pair new weights with old metadata. :func:`replace_together` writes a journal of
the renames first (atomically, after both new files are complete) and deletes it when they are done; a crash
before the journal leaves the old pair, and :func:`finish_interrupted` (called by every loader of a pair, and
by the next writer) completes a journal it finds, so a crash after it yields the new pair.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

JOURNAL_SUFFIX = ".replacing.json"


def normal_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file here: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def temporary_beside(target: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path in ``target``'s folder (same file system, so a rename is atomic), removed
    again unless the caller renamed it; the file exists, empty, with the normal mode."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, normal_mode())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """``write(tmp)`` writes the new content to a temporary path, which then replaces ``target`` whole."""
    target = Path(target)
    with temporary_beside(target) as tmp:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    write_atomic(target, lambda tmp: tmp.write_bytes(data))


def journal_path(target: str | os.PathLike[str]) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}{JOURNAL_SUFFIX}")


def replace_together(moves: Sequence[tuple[Path, Path]]) -> None:
    """Rename every complete temporary file ``src`` over its ``dst``, all or (after a crash) none.

    Destinations share one folder; sources lie in it or below it. The journal, named after the first
    destination, lists the renames; it is written atomically once every ``src`` is complete, and removed
    after the last rename.
    """
    if not moves:
        return
    folder = Path(moves[0][1]).parent.resolve()
    entries = []
    for src, dst in moves:
        rel_src = os.path.relpath(Path(src).resolve(), folder)
        rel_dst = os.path.relpath(Path(dst).resolve(), folder)
        if not _inside(rel_src) or not _inside(rel_dst) or os.sep in rel_dst:
            raise ValueError(f"replace_together renames into one folder: {src} -> {dst}")
        with open(src, "rb+") as f:
            os.fsync(f.fileno())
        entries.append([rel_src, rel_dst])
    journal = journal_path(moves[0][1])
    write_bytes_atomic(journal, json.dumps({"renames": entries}).encode())
    _complete(journal)


def finish_interrupted(target: str | os.PathLike[str]) -> bool:
    """Complete the renames of a pair whose writer was interrupted after committing (True if there were any).

    A journal that cannot be read is removed: it was being written, so the old pair stands.
    """
    journal = journal_path(target)
    if not journal.exists():
        return False
    _complete(journal)
    return True


def _inside(relative: str) -> bool:
    return not os.path.isabs(relative) and ".." not in Path(relative).parts


def _complete(journal: Path) -> None:
    folder = journal.parent
    try:
        renames = [(str(src), str(dst)) for src, dst in json.loads(journal.read_text())["renames"]]
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)
        return
    for src, dst in renames:
        if not (_inside(src) and _inside(dst)):
            continue  # never written by replace_together: nothing outside the folder is touched
        if (folder / src).exists():
            os.replace(folder / src, folder / dst)
    journal.unlink(missing_ok=True)
