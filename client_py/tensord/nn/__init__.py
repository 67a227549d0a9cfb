"""`tensord.nn`: modules, layers and losses with torch.nn's names, running on a tensord server.

    import tensord

    td = tensord.connect("127.0.0.1:50051")
    model = td.nn.Sequential(td.nn.Linear(2, 16), td.nn.ReLU(), td.nn.Linear(16, 3))
    loss = td.nn.CrossEntropyLoss()(model(x), labels)
    loss.backward()

Layers that create weights (`Linear`) are reached through a client, `td.nn`,
so that they know which server to create them on (see `bind`); everything
else is the same object through `td.nn` and `tensord.nn`. Parameters live on
the server; every layer's forward is one server op, recorded for autograd.
"""
from tensord.nn import functional
from tensord.nn.activation import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tensord.nn.binding import BoundNN, bind
from tensord.nn.container import ModuleList, Sequential
from tensord.nn.dropout import Dropout
from tensord.nn.flatten import Flatten
from tensord.nn.linear import Identity, Linear
from tensord.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from tensord.nn.module import IncompatibleKeys, Module
from tensord.nn.parameter import Parameter

__all__ = [
    "BCEWithLogitsLoss",
    "BoundNN",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GELU",
    "Identity",
    "IncompatibleKeys",
    "L1Loss",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "bind",
    "functional",
]
