"""Deterministic float32 inference kernels (numba, one thread, no BLAS).

Every kernel writes into a caller-provided ``out`` array (the executor preallocates all activation
buffers once) and takes arrays and plain ints/floats only. Kernels that need scratch memory take a
float32 workspace ``ws`` (``*_workspace_size`` says how many elements), so the executor can
allocate one workspace of the largest size and share it.

Submodules: :mod:`.gemm` (Gemm/MatMul), :mod:`.conv`, :mod:`.pool`, :mod:`.elementwise`,
:mod:`.norm`, :mod:`.shape`; the micro-kernel is in :mod:`._ukernel`, which explains why results
are bit-reproducible. :mod:`.dispatch` holds the glue from a graph node to these kernels; which
op uses which dispatcher is said in the op registry, :mod:`flight.model.ops`.
"""

from __future__ import annotations

# First: the kernel path must be chosen before any numba decorator builds the code generator.
from .isa import PATH as KERNEL_PATH  # isort: skip

from . import _act
from ._act import ACT_CLIP, ACT_LEAKY, ACT_NONE, ACT_RELU
from .conv import (
    conv2d,
    conv2d_packed,
    conv_output_size,
    conv_workspace_size,
    pack_conv_weights,
    packed_weights_size,
)
from .conv3d import avgpool3d, conv3d, conv3d_workspace_size, maxpool3d
from .elementwise import (
    OP_ADD,
    OP_DIV,
    OP_MUL,
    OP_SUB,
    act_flat,
    binary,
    copy_flat,
    sigmoid_flat,
    sum_n,
    tanh_flat,
)
from .gemm import gemm, gemm_nn, gemm_workspace_size, matmul, matmul_shape, matmul_workspace_size
from .norm import batchnorm, fold_batchnorm, lrn, softmax
from .pool import avgpool2d, global_avgpool, maxpool2d, pool_output_size
from .shape import concat, gather, pad, transpose


def _drop_stale_cache() -> None:
    """Before any kernel runs (numba loads cached code on first call): see
    :func:`flight.jitcache.drop_stale_kernels`."""
    import os
    from pathlib import Path

    from flight.jitcache import drop_stale_kernels

    cache = getattr(_act.bias_act_rows, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    if path is not None and os.path.isdir(path):
        drop_stale_kernels(Path(__file__).resolve().parent, Path(path))


_drop_stale_cache()

__all__ = [
    "ACT_CLIP",
    "ACT_LEAKY",
    "ACT_NONE",
    "ACT_RELU",
    "KERNEL_PATH",
    "OP_ADD",
    "OP_DIV",
    "OP_MUL",
    "OP_SUB",
    "act_flat",
    "avgpool2d",
    "avgpool3d",
    "batchnorm",
    "binary",
    "concat",
    "conv2d",
    "conv2d_packed",
    "conv3d",
    "conv3d_workspace_size",
    "conv_output_size",
    "conv_workspace_size",
    "copy_flat",
    "fold_batchnorm",
    "gather",
    "gemm",
    "gemm_nn",
    "gemm_workspace_size",
    "global_avgpool",
    "lrn",
    "matmul",
    "matmul_shape",
    "matmul_workspace_size",
    "maxpool2d",
    "maxpool3d",
    "pack_conv_weights",
    "packed_weights_size",
    "pad",
    "pool_output_size",
    "sigmoid_flat",
    "softmax",
    "sum_n",
    "tanh_flat",
    "transpose",
]
