"""`tensord.optim`: SGD, Adam and AdamW with torch.optim's names, updating parameters on the server.

    optimizer = td.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

The optimizer's state lives on the server; `step()` and `zero_grad()` are
one command each, whatever the number of parameters.
"""
from tensord.optim.adam import Adam, AdamW
from tensord.optim.optimizer import Optimizer
from tensord.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "SGD"]
