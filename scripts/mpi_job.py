"""The processes of an `mpirun` job started in a session of its own
(subprocess.Popen(..., start_new_session=True)), and which of them holds which rank.

A rank is known by the rank Open MPI gave it (OMPI_COMM_WORLD_RANK in its environment), never
by its pid: pids wrap around (kernel.pid_max is 32768 on many machines), so rank 0 is not
always the lowest.
"""
import os


def session_pids(sid):
    """Processes whose session id is `sid`: mpirun (sid itself) and the ranks it started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2:].split()  # state ppid pgrp session ...
            if int(fields[3]) == sid:
                pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pids)


def mpi_rank(pid):
    """The rank Open MPI gave process `pid`, or None (not a rank, or gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for var in f.read().split(b"\0"):
                if var.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(var.split(b"=", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def rank_pid(sid, rank):
    """The pid of rank `rank` of the job whose mpirun leads session `sid`, or None."""
    for pid in session_pids(sid):
        if pid != sid and mpi_rank(pid) == rank:
            return pid
    return None
