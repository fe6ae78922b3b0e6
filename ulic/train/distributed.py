"""Training on several processes with torchrun (DistributedDataParallel).

    torchrun --nproc_per_node N -m ulic.train.train_codec --latents ... --run ...

Each process is one rank: gloo on CPUs, NCCL on GPUs (one GPU per local rank). Every rank builds
the same model from the same seed, DDP averages gradients so the weights stay identical, each
rank draws its crops only from its own shard of the images (`shard`: every image in exactly one
shard), and rank 0 alone logs and writes checkpoints (the others wait for it before reading one).
Without torchrun (no WORLD_SIZE) everything runs as one process, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn

from ulic.atomic import write_text_atomic

SEED_PER_RANK = 1000  # ranks draw different data and noise: seed + SEED_PER_RANK * rank


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init() -> Rank:
    """Join the process group torchrun set up (env:// rendezvous), or run alone; a second call
    returns the same rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def wrap(model: nn.Module, r: Rank) -> nn.Module:
    """The module to call in the training step: DDP around it when distributed."""
    if not r.distributed:
        return model
    ids = [r.device.index] if r.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(keys: list[str], r: Rank) -> list[str]:
    """This rank's share of the sorted keys: every key in exactly one shard."""
    return sorted(keys)[r.rank :: r.world]


def shard_indices(n: int, r: Rank) -> list[int]:
    """This rank's share of range(n): every index in exactly one shard."""
    return list(range(r.rank, n, r.world))


def barrier(r: Rank) -> None:
    if r.distributed:
        dist.barrier()


def gather(obj: object, r: Rank) -> list[object]:
    """Every rank's obj, in rank order (on every rank)."""
    if not r.distributed:
        return [obj]
    out: list[object] = [None] * r.world
    dist.all_gather_object(out, obj)
    return out


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters (float bytes): equal on every rank when DDP keeps them in step."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_ranks(run_dir: Path, model: nn.Module, my_shard: list, r: Rank) -> None:
    """run_dir/ranks.json (distributed runs): each rank's data shard and its weights' sha256 at
    the end, so anyone can check that the shards cover the data once and the ranks agree."""
    shards = gather(my_shard, r)
    digests = gather(weights_digest(model), r)
    if r.main:
        doc = {"world": r.world, "weights_sha256": digests, "shards": shards}
        write_text_atomic(run_dir / "ranks.json", json.dumps(doc, indent=1) + "\n")


def finish(r: Rank) -> None:
    """Leave the process group together and end the process: a barrier first, so that no rank
    tears its connections down while another still uses them; then, once every file is written
    and closed, the rank exits at once (exit status 0) instead of running the interpreter's
    teardown, where gloo's and the store's C++ threads can still abort a process ("terminate
    called without an active exception": seen in fresh-clone CI runs even after the barrier)."""
    if r.distributed:
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
