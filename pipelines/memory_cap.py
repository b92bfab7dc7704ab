"""A memory cap on a child process tree: a cgroup v2 ``memory.max`` where this process may make one, else RLIMIT_DATA.

RLIMIT_AS would count the address space a JVM or Ray reserves and never touches, so it refuses
runs that fit; RLIMIT_DATA counts the heap and private writable mappings (what NumPy and Arrow
allocate) per process; a cgroup counts what the whole tree really holds. The bench and the
bounded-memory tests run engines under it, so bounded memory is shown, not claimed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class MemoryCap:
    """A cap of ``limit`` bytes for children started with ``preexec_fn=cap.enter``; ``close`` removes a cgroup."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cgroup: Path | None = None
        controllers = CGROUP_ROOT / "cgroup.controllers"
        try:
            if "memory" in controllers.read_text().split() and os.access(CGROUP_ROOT, os.W_OK):
                group = CGROUP_ROOT / f"scaleclf-cap-{uuid.uuid4().hex[:8]}"
                group.mkdir()
                (group / "memory.max").write_text(str(limit))
                (group / "memory.swap.max").write_text("0")
                self.cgroup = group
        except OSError:
            self.cgroup = None

    @property
    def kind(self) -> str:
        """Return how the cap is enforced, in words."""
        return "cgroup v2 memory.max" if self.cgroup is not None else "RLIMIT_DATA"

    def enter(self) -> None:
        """Put the calling (just forked) process under the cap."""
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_DATA, (self.limit, self.limit))

    def close(self) -> None:
        """Remove the cgroup (its processes have exited)."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()
            self.cgroup = None
