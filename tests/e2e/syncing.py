"""Sync points for tests of pipelined ops.

Ops return before the server has run them; a failure surfaces at the next
sync point (see client_py/tensord/_executor.py). A test that expects an op
to fail therefore reads its result: `synced(t.transpose(0, 5))`.
"""
from __future__ import annotations

from typing import Any

import tensord


def synced(value: Any) -> Any:
    """Syncs on `value` (a Tensor, a sequence of them, or a Client) and returns it.

    A Tensor is downloaded, which raises the failure of the op that made it
    (or of any op issued before); a Client is synchronized.
    """
    if isinstance(value, tensord.Tensor):
        value.numpy()
    elif isinstance(value, tensord.Client):
        value.synchronize()
    elif isinstance(value, (list, tuple)):
        for item in value:
            synced(item)
    return value
