"""`bind(client)`: the `client.nn` namespace, where layers know which server to create weights on.

`td.nn.Linear(3, 2)` must create its weight on `td`'s server without being
told. `td.nn` is a `BoundNN` over the `tensord.nn` module: it returns every
layer that needs a client (`Module._needs_client`, e.g. `Linear`) as a
subclass with `_client = td`, made once per client and named like the
original (so `repr` and `isinstance(layer, tensord.nn.Linear)` are
unchanged), and everything else (`Module`, `Parameter`, `functional`,
activations, losses, containers) as it is.

Thread-safe: the cache is filled under a lock.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tensord.client import Client


class BoundNN:
    """`tensord.nn` as seen from one client (see the module docstring)."""

    def __init__(self, client: "Client") -> None:
        self._client = client
        self._bound: dict[str, type] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        import tensord.nn as nn

        try:
            value = getattr(nn, name)
        except AttributeError:
            raise AttributeError(f"tensord.nn has no attribute {name!r}") from None
        if not (isinstance(value, type) and issubclass(value, nn.Module) and value._needs_client):
            return value
        with self._lock:
            bound = self._bound.get(name)
            if bound is None:
                bound = type(
                    value.__name__,
                    (value,),
                    {
                        "_client": self._client,
                        "__qualname__": value.__qualname__,
                        "__module__": value.__module__,
                        "__doc__": value.__doc__,
                    },
                )
                self._bound[name] = bound
        return bound

    def __dir__(self) -> list[str]:
        import tensord.nn as nn

        return sorted(set(dir(nn)) | set(object.__dir__(self)))

    def __repr__(self) -> str:
        return f"<tensord.nn bound to {self._client!r}>"


def bind(client: "Client") -> BoundNN:
    """The `tensord.nn` namespace whose parameter-creating layers use `client` (what `Client.nn` is)."""
    return BoundNN(client)
