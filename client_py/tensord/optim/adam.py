"""`Adam` and `AdamW`, as torch.optim's: adaptive moments, with L2 or decoupled weight decay and AMSGrad."""
from __future__ import annotations

from typing import Any

from tensord.optim.optimizer import Optimizer, ParamsT, check_number
from tensord.v1 import tensord_pb2 as pb


class Adam(Optimizer):
    """torch.optim.Adam's update, run on the server (state: exp_avg, exp_avg_sq, max_exp_avg_sq, step).

    `weight_decay` adds weight_decay * p to the gradient (L2); `AdamW` decays
    the parameter directly instead.
    """

    _kind = pb.CreateOptimizerRequest.ADAM

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        # torch's checks in torch's order.
        check_number(options["lr"], "lr", "learning rate")
        check_number(options["eps"], "eps", "epsilon value")
        betas = options["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers, got {betas!r}")
        check_number(betas[0], "betas[0]", "beta parameter at index 0", upper=1.0)
        check_number(betas[1], "betas[1]", "beta parameter at index 1", upper=1.0)
        check_number(options["weight_decay"], "weight_decay", "weight_decay value")

    def _options(self, group: dict[str, Any]) -> pb.OptimizerOptions:
        beta1, beta2 = group["betas"]
        return pb.OptimizerOptions(
            lr=float(group["lr"]),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            amsgrad=bool(group["amsgrad"]),
            maximize=bool(group["maximize"]),
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay before each update."""

    _kind = pb.CreateOptimizerRequest.ADAMW

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
