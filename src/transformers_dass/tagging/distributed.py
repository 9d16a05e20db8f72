"""`dass tag` under `torchrun` / `accelerate launch`: torch.distributed as those launchers set it up.

The launchers start one process per GPU (or per `--nproc_per_node` on CPU) on each node and give it `RANK`,
`WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`. `Ranks.from_environment` joins the process group
(gloo on CPU, nccl on GPUs, one GPU per process by `LOCAL_RANK`); every process takes a disjoint, fixed share of
the inputs (`share`), and the processes meet at barriers to start together and to let process 0 write the final
table after all shards are written. Without those variables (a plain `dass tag`) it is one process and no group.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Ranks", "share"]

BARRIER_TIMEOUT_HOURS = 48


@dataclass
class Ranks:
    """This process's place in the run.

    Attributes:
        rank, world_size: this process's number and the number of processes (all nodes).
        local_rank, local_world_size: the same on this node (picks the GPU; divides the node's CPU cores).
        device: where the model runs: `cuda:LOCAL_RANK` when GPUs are there, else the CPU.
        owns_group: whether this object started the process group (and so ends it in `close`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @classmethod
    def from_environment(cls, device: str | None = None) -> Ranks:
        """The ranks of the launcher's environment, joining the process group if there are several processes.

        Args:
            device: "cpu", "cuda" or "cuda:N"; None picks the GPU `cuda:LOCAL_RANK` where there are GPUs.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
        chosen = _device(device, local_rank)
        owns_group = False
        if world_size > 1 and not dist.is_initialized():
            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
            backend = "nccl" if chosen.type == "cuda" else "gloo"
            if chosen.type == "cuda":
                torch.cuda.set_device(chosen)
            # The processes meet at a barrier when each has tagged its share; one may finish hours after another
            # (a share with long recordings), so the wait may last far beyond the default 30 minutes. A process
            # that fails is still noticed at once: torchrun stops the others.
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=BARRIER_TIMEOUT_HOURS))
            owns_group = True
        if dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        return cls(rank, world_size, local_rank, local_world_size, chosen, owns_group)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all processes (the same list on every process)."""
        if not self.distributed:
            return list(values)
        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def gather(self, value) -> list:
        """`value` of every process, in rank order (on every process)."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _device(requested: str | None, local_rank: int) -> torch.device:
    if requested is None or requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def share(count: int, rank: int, world_size: int) -> list[int]:
    """Positions of the inputs that process `rank` tags: every `world_size`-th from `rank` on. Disjoint, together
    all of `range(count)`, and the same on every process; neighbours in a folder go to different processes, so
    each gets a like mix of long and short files."""
    return list(range(rank, count, world_size))
