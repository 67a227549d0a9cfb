"""The PyTorch side of the parity suite, run in the reference interpreter.

    python reference.py CASES.pickle RESULTS.pickle

reads the cases that test_parity.py generated, runs each on torch (CPU,
float32 default dtype, deterministic seed) and writes one result per case id.
Needs torch and NumPy only.
"""
from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import torch

import program

TORCH_DTYPES = {name: getattr(torch, name) for name in program.DTYPES}
NAMES = {v: k for k, v in TORCH_DTYPES.items()}


class Torch(program.Library):
    namespace = {"lib": torch, "F": torch.nn.functional, "optim": torch.optim}

    def tensor(self, packed: program.Packed, requires_grad: bool) -> torch.Tensor:
        array = program.raw_numpy(packed)
        if packed.dtype == "bfloat16":
            t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(array)
        return t.requires_grad_(requires_grad)

    def result(self, value) -> program.Packed:
        if not isinstance(value, torch.Tensor):  # item(), a Python number
            return program.Packed(type(value).__name__, (), None, repr(value).encode())
        t = value.detach()
        strides = tuple(t.stride())
        dense = t.contiguous()
        if t.dtype == torch.bfloat16:
            array = dense.view(torch.int16).numpy().view(np.uint16)
        else:
            array = dense.numpy()
        return program.pack(array, NAMES[t.dtype], strides)


def main() -> None:
    cases_path, results_path = sys.argv[1], sys.argv[2]
    with open(cases_path, "rb") as f:
        cases = pickle.load(f)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    library = Torch()
    results = {}
    for fields in cases:
        case = program.Case(*fields)
        torch.manual_seed(0)
        results[case.id] = program.run(case, library)
    with open(results_path, "wb") as f:
        pickle.dump({"torch": str(torch.__version__), "results": results}, f)


if __name__ == "__main__":
    main()
