"""`SGD`: stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as torch.optim.SGD."""
from __future__ import annotations

import math
from typing import Any

from tensord.optim.optimizer import Optimizer, ParamsT, check_number
from tensord.v1 import tensord_pb2 as pb


class SGD(Optimizer):
    """torch.optim.SGD's update, run on the server:

        g = grad (negated with maximize) + weight_decay * p
        buf = g at the first step, then momentum * buf + (1 - dampening) * g
        g = g + momentum * buf with nesterov, else buf (when momentum != 0)
        p = p - lr * g
    """

    _kind = pb.CreateOptimizerRequest.SGD

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        # torch's checks in torch's order.
        check_number(options["lr"], "lr", "learning rate")
        momentum = check_number(options["momentum"], "momentum", "momentum value")
        check_number(options["weight_decay"], "weight_decay", "weight_decay value")
        dampening = float(options["dampening"])
        if not math.isfinite(dampening):
            raise ValueError(f"Invalid dampening value: {options['dampening']}")
        if options["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _options(self, group: dict[str, Any]) -> pb.OptimizerOptions:
        return pb.OptimizerOptions(
            lr=float(group["lr"]),
            momentum=float(group["momentum"]),
            dampening=float(group["dampening"]),
            weight_decay=float(group["weight_decay"]),
            nesterov=bool(group["nesterov"]),
            maximize=bool(group["maximize"]),
        )
