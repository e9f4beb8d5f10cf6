"""How a process joins a multi-process launch (torchrun, accelerate launch), on GPUs and on CPUs alike, and how
the launch's processes stop together when one of them fails, with each reason shown once."""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import torch


def on_cpu() -> bool:
    """Whether to run on the CPU: no GPU here, or ACCELERATE_USE_CPU=1.

    accelerate only joins a launch's processes over gloo when told it runs on the CPU; otherwise each
    process of `torchrun --nproc_per_node 2` on a machine without GPUs would run alone.
    """
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's `PartialState`: this process's rank, device and process group (created on first use
    when launched as several processes, and left when the interpreter exits, see `leave_process_group`)."""
    from accelerate import PartialState

    state = PartialState(cpu=on_cpu())
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        _leave_process_group_at_exit()  # ~0.5 s at exit (a scan of every object), so only where there is a group
    return state


@functools.cache
def _leave_process_group_at_exit() -> None:
    atexit.register(leave_process_group)


def leave_process_group() -> None:
    """Destroy this process's process group, if it has one, and free it while the interpreter is still whole.

    Left to interpreter shutdown, gloo's worker threads can abort a process that has finished its
    work ("terminate called without an active exception", exit -6), failing the whole launch.
    `destroy_process_group` alone does not end those threads: they live while anything holds the group.
    """
    if not torch.distributed.is_available():
        return
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _release_device_mesh_groups()
    gc.collect()  # a finished FSDP model may still sit in unreachable cycles that hold the group


def _release_device_mesh_groups() -> None:
    """Drop the process groups that DTensor device meshes keep after the groups were destroyed.

    Under FSDP2, torch 2.13 keeps each mesh alive in DTensor's sharding caches, and a mesh holds its
    groups in `_pg_registry` (a private cache of group objects by name). No public call clears it, so
    this one does, for every mesh there is.
    """
    device_mesh = sys.modules.get("torch.distributed.device_mesh")
    if device_mesh is None:
        return  # no mesh was ever made
    for mesh in gc.get_objects():
        # by type, not isinstance: that reads `__class__` of every object, and torch.distributed.reduce_op warns
        if issubclass(type(mesh), device_mesh.DeviceMesh):
            getattr(mesh, "_pg_registry", {}).clear()


class StoppedWithOthers(Exception):
    """This process stops because another process of the launch failed; that one reports why (`stop_together`)."""


# What a collective says when a process it waits for has gone: gloo's words, then NCCL's.
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote process exited")


def lost_another_process(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another process of the launch stopped (crashed or
    raised): a consequence, whose traceback would only bury that process's own message."""
    return isinstance(error, RuntimeError) and any(words in str(error) for words in PEER_LOST)


def _in_group() -> bool:
    """Whether this process belongs to a process group (a launch of several processes)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    """This process's rank in its launch (0 without a process group)."""
    return torch.distributed.get_rank() if _in_group() else 0


def first_failure(failed: bool) -> int | None:
    """The lowest rank whose `failed` is true, or None when no process failed: one all_reduce, called by every
    process of the launch (no collective without a process group)."""
    if not _in_group():
        return 0 if failed else None
    world = torch.distributed.get_world_size()
    flag = torch.tensor([_rank() if failed else world], device=process_state().device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    first = int(flag.item())
    return None if first == world else first


def stop_together(error: BaseException | None, reporter: int) -> NoReturn:
    """Stop this process of a launch whose processes all stop now: process `reporter` raises its `error`, every
    other one StoppedWithOthers (which the command line leaves unsaid), so the reason is shown once."""
    if _rank() == reporter and error is not None:
        raise _stopping_all(error)
    raise _stopping_all(StoppedWithOthers(f"process {reporter} failed")) from error


STOPS_ALL = "stops_every_process"  # the attribute marking an error that every process of the launch stops with


def _stopping_all(error: BaseException) -> BaseException:
    """`error`, marked as one that this process stops with while every other process of the launch stops too."""
    setattr(error, STOPS_ALL, True)
    return error


def stops_every_process(error: BaseException) -> bool:
    """Whether `error` is one that every process of the launch stops with (`stop_together`, `failing_together`)."""
    return getattr(error, STOPS_ALL, False)


def said_together(error: BaseException) -> None:
    """Once this process has shown why it stops (a StoppedWithOthers: nothing), wait for every other one stopping with
    it (`stop_together`, `failing_together`) to have shown its reason too: the launcher ends the other processes as
    soon as one exits, which would cut a reason not yet shown. No wait for any other error, or without a group."""
    if not (_in_group() and stops_every_process(error)):
        return
    try:
        process_state().wait_for_everyone()
    except RuntimeError as lost:
        if not lost_another_process(lost):  # one already gone (its traceback shown): nothing left to wait for
            raise


def _words(error: BaseException | None) -> str | None:
    """What an error says, its type and message (None: no error)."""
    return None if error is None else f"{type(error).__name__}: {error}"


def says_the_same(error: BaseException | None, reporter: int) -> bool:
    """Whether `error` says what process `reporter`'s error says: one broadcast of the reporter's words, called by
    every process of the launch (no collective without a process group)."""
    said = [_words(error)]
    if _in_group():
        torch.distributed.broadcast_object_list(said, src=reporter, device=process_state().device)
    return said[0] == _words(error)


@contextlib.contextmanager
def failing_together() -> Iterator[None]:
    """Run a block on every process of a launch, then agree in one collective whether it failed anywhere: if so,
    every process stops, the first that failed reporting its error (see `stop_together`), and so does every other
    one whose error says something else (a second collective), so that no reason waits for the first to be fixed.

    The block must hold no collective: a process that failed before one would leave the others waiting in it.
    """
    error = None
    try:
        yield
    except Exception as caught:  # any error, a bug too: re-raised below by the process that reports it
        error = caught
    first = first_failure(error is not None)
    if first is None:
        return
    same = says_the_same(error, first)  # a collective: every process takes part, failed or not
    if error is not None and not same:
        raise _stopping_all(error)  # a reason of its own: shown too
    stop_together(error, first)
