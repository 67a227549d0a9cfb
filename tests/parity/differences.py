"""Where tensord differs from PyTorch on purpose, as case-id patterns.

Each entry is (fnmatch pattern over case ids, reason). Matching cases are
expected to differ (strict xfail: one that starts to agree fails, so this
list stays true). The README's "Differences from PyTorch" names each one.
"""
from __future__ import annotations

import fnmatch

NO_COMPLEX32 = ("tensord has no complex32: a float16 or bfloat16 tensor with a complex operand computes "
                "in complex64, where PyTorch makes complex32 (and then mostly refuses it)")
FLOAT_TO_INT = ("a float (or complex) value that is NaN, infinite or outside an integer dtype's range "
                "casts to a saturated value in tensord (NaN to 0); in PyTorch the result is C++'s "
                "undefined behaviour and depends on the CPU")
EXPECTED: list[tuple[str, str]] = [
    ("number/float16?pycomplex", NO_COMPLEX32), ("number/pycomplex?float16", NO_COMPLEX32),
    ("number/bfloat16?pycomplex", NO_COMPLEX32), ("number/pycomplex?bfloat16", NO_COMPLEX32),
    ("number/float16??pycomplex", NO_COMPLEX32), ("number/pycomplex??float16", NO_COMPLEX32),
    ("number/bfloat16??pycomplex", NO_COMPLEX32), ("number/pycomplex??bfloat16", NO_COMPLEX32),
    ("promote0d/add/*float16-0dcomplex*", NO_COMPLEX32), ("promote0d/mul/*float16-0dcomplex*", NO_COMPLEX32),
    ("promote0d/add/0dcomplex*-*float16", NO_COMPLEX32), ("promote0d/mul/0dcomplex*-*float16", NO_COMPLEX32),
    ("view21/*", "clone() of a strided tensor returns C-contiguous strides (PyTorch keeps a "
                 "permutation's strides: memory_format=torch.preserve_format)"),
    ("cast-special/float*->*int*", FLOAT_TO_INT), ("cast-special/bfloat16->*int*", FLOAT_TO_INT),
    ("cast-special/complex*->*int*", FLOAT_TO_INT), ("cast-range/*->int8", FLOAT_TO_INT),
    ("cast-range/*->int16", FLOAT_TO_INT),
    ("rule/inplace-on-graph-nonleaf/*", "in-place ops on non-leaf tensors that are part of a graph are refused"),
    ("rule/index-write-casts-values", "t[idx] = v casts v to t's dtype, as copy_ does; PyTorch refuses "
                                      "mismatched dtypes in index writes"),
    ("rule/float-list-index", "a list of floats as an index is refused; PyTorch truncates the floats"),
    ("grad25/*", "autograd through complex tensors is not supported: a complex result of tensors "
                 "that require grad does not require grad"),
]


def expected(case_id: str) -> str | None:
    for pattern, reason in EXPECTED:
        if fnmatch.fnmatchcase(case_id, pattern):
            return reason
    return None
