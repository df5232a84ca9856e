"""Row primitives written as LLVM vectors (numba intrinsics): MaxPool's window, and the fixed-order
dot product of a batch-1 fully connected layer.

numba's loops over two arrays do not vectorise here (LLVM cannot rule out aliasing, and numba's
negative-index checks get in the way), so a max-pool row ran as scalar ``maxss``: ten times
onnxruntime's time. ``max_window`` uses the kernel path's vector width (:mod:`.isa`) directly.

Semantics are exactly the scalar ones, lane by lane: ``acc = v if (v > acc or v is NaN) else
acc``, so the first maximum wins ties (``-0.0`` vs ``0.0``) and the last NaN tap propagates,
whatever the vector width (see :func:`_fold` for how that is computed without a slow chain).
No bounds are checked: the callers own the ranges.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._ukernel import _F32, _I32, _c
from .isa import PATH

VW = PATH.vw
#: Output vectors folded together in the main loop (independent chains hide compare latency).
_UNROLL = 4


def _vptr(builder, base, off, width):
    return builder.bitcast(builder.gep(base, [off]), ir.VectorType(_F32, width).as_pointer())


def _fold(builder, m_ptr, nan_ptr, v):
    """One tap of the scalar rule ``m = v if (v > m or v is NaN) else m``, split in two chains.

    ``m`` keeps the first maximum of the non-NaN taps (``v > m ? v : m``: one ``maxps``, a short
    dependency chain) and ``nan`` the last NaN tap (a blend; its compare is off the chain). The
    result (:func:`_result`) is ``nan`` if any tap was NaN, else ``m``: bit for bit the scalar
    rule, whose accumulator after a NaN is the last NaN seen.
    """
    m = builder.load(m_ptr, align=4)
    builder.store(builder.select(builder.fcmp_ordered(">", v, m), v, m), m_ptr, align=4)
    nan = builder.load(nan_ptr, align=4)
    builder.store(builder.select(builder.fcmp_unordered("uno", v, v), v, nan), nan_ptr, align=4)


def _result(builder, m_ptr, nan_ptr):
    m = builder.load(m_ptr, align=4)
    nan = builder.load(nan_ptr, align=4)
    return builder.select(builder.fcmp_unordered("uno", nan, nan), nan, m)


def _widths() -> list[int]:
    """VW, VW/2, ... down to 4 lanes: the tail of a row still runs in vectors."""
    out, w = [], VW
    while w >= 4:
        out.append(w)
        w //= 2
    return out


@intrinsic
def max_window(typingctx, dst, doff, src, soff, step, n, nrows, rstride, ncols, cstride):
    """dst[doff + i] = max over the window taps of src for outputs i < n, in vectors.

    Output i's taps are ``src[soff + r*rstride + k*cstride + i*step]`` for ``r < nrows``, ``k <
    ncols``, visited row-major from -inf (the scalar order); the maximum stays in a register
    across the taps and is stored once. Strides 1 and 2 run in vectors (two loads and an
    even-lane shuffle for 2, never reading past the last tap); others lane by lane.
    """
    ok = all(isinstance(a, types.Array) and a.dtype == types.float32 for a in (dst, src))
    if not ok:
        return None
    sig = types.void(dst, doff, src, soff, step, n, nrows, rstride, ncols, cstride)

    def codegen(context, builder, signature, args):
        aty = signature.args
        doff_i, soff_i, step_i, n_i, nr_i, rs_i, nc_i, cs_i = (
            context.cast(builder, args[i], aty[i], types.int64) for i in (1, 3, 4, 5, 6, 7, 8, 9)
        )
        dbase = builder.gep(context.make_array(aty[0])(context, builder, args[0]).data, [doff_i])
        sbase = builder.gep(context.make_array(aty[2])(context, builder, args[2]).data, [soff_i])
        is1 = builder.icmp_signed("==", step_i, _c(1))
        is2 = builder.icmp_signed("==", step_i, _c(2))
        last = builder.select(is2, builder.sub(n_i, _c(1)), n_i)
        pos = cgutils.alloca_once_value(builder, _c(0))

        def taps(origins, width, load):
            """Fold the window's taps for output vectors (or a scalar) whose first taps are at
            ``origins``; returns their maxima. Several vectors at once keep several independent
            chains in flight."""
            vty = ir.VectorType(_F32, width) if width > 1 else _F32

            def const(v):
                return ir.Constant(vty, [v] * width) if width > 1 else ir.Constant(_F32, v)

            ms = [cgutils.alloca_once_value(builder, const(float("-inf"))) for _ in origins]
            nans = [cgutils.alloca_once_value(builder, const(0.0)) for _ in origins]
            with cgutils.for_range(builder, nr_i) as lr:
                roff = builder.mul(lr.index, rs_i)
                with cgutils.for_range(builder, nc_i) as lc:
                    off = builder.add(roff, builder.mul(lc.index, cs_i))
                    for m, nan, origin in zip(ms, nans, origins, strict=True):
                        _fold(builder, m, nan, load(builder.gep(origin, [off])))
            return [_result(builder, m, nan) for m, nan in zip(ms, nans, strict=True)]

        def vload(p, width):
            return builder.load(_vptr(builder, p, _c(0), width), align=4)

        with builder.if_then(builder.or_(is1, is2)):
            for w, unroll in [(VW, _UNROLL)] + [(w, 1) for w in _widths()]:
                even = ir.Constant(ir.VectorType(_I32, w), [2 * i for i in range(w)])
                cond = builder.append_basic_block(f"max_window.w{w}x{unroll}.cond")
                body = builder.append_basic_block(f"max_window.w{w}x{unroll}.body")
                after = builder.append_basic_block(f"max_window.w{w}x{unroll}.after")
                builder.branch(cond)
                builder.position_at_end(cond)
                i = builder.load(pos)
                span = _c(w * unroll)
                builder.cbranch(builder.icmp_signed("<=", builder.add(i, span), last), body, after)
                builder.position_at_end(body)
                outs = [builder.add(i, _c(u * w)) for u in range(unroll)]
                origins = [builder.gep(sbase, [builder.mul(o, step_i)]) for o in outs]
                with builder.if_else(is1) as (unit, two):
                    with unit:
                        ms = taps(origins, w, lambda p, w=w: vload(p, w))
                        for m, o in zip(ms, outs, strict=True):
                            builder.store(m, _vptr(builder, dbase, o, w), align=4)
                    with two:

                        def load2(p, w=w, even=even):
                            lo = vload(p, w)
                            hi = vload(builder.gep(p, [_c(w)]), w)
                            return builder.shuffle_vector(lo, hi, even)

                        ms = taps(origins, w, load2)
                        for m, o in zip(ms, outs, strict=True):
                            builder.store(m, _vptr(builder, dbase, o, w), align=4)
                builder.store(builder.add(i, span), pos)
                builder.branch(cond)
                builder.position_at_end(after)
            # the rest (a few outputs): one more full vector ending at output n-1, overlapping
            # outputs already written (they get the same values again). For stride 2 it takes
            # the odd lanes of a load that starts one float early, so it ends on the last tap.
            tail = builder.and_(
                builder.icmp_signed("<", builder.load(pos), n_i),
                builder.icmp_signed(">", n_i, _c(VW)),
            )
            with builder.if_then(tail):
                i = builder.sub(n_i, _c(VW))
                origin = builder.gep(sbase, [builder.mul(i, step_i)])
                odd = ir.Constant(ir.VectorType(_I32, VW), [2 * j + 1 for j in range(VW)])
                with builder.if_else(is1) as (unit, two):
                    with unit:
                        (m1,) = taps([origin], VW, lambda p: vload(p, VW))
                        builder.store(m1, _vptr(builder, dbase, i, VW), align=4)
                    with two:

                        def load_odd(p):
                            lo = vload(builder.gep(p, [_c(-1)]), VW)
                            hi = vload(builder.gep(p, [_c(VW - 1)]), VW)
                            return builder.shuffle_vector(lo, hi, odd)

                        (m2,) = taps([origin], VW, load_odd)
                        builder.store(m2, _vptr(builder, dbase, i, VW), align=4)
                builder.store(n_i, pos)
        with cgutils.for_range_slice(builder, builder.load(pos), n_i, _c(1)) as (i, _):
            origin = builder.gep(sbase, [builder.mul(i, step_i)])
            (m,) = taps([origin], 1, lambda p: builder.load(p, align=4))
            builder.store(m, builder.gep(dbase, [i]), align=4)
        return context.get_dummy_value()

    return sig, codegen


#: Lanes of :func:`dot`'s accumulator: fixed (not the path's width), so a dot product has the
#: same summation order, hence the same bits, on every FMA path.
DOT_LANES = 16


@intrinsic
def dot(typingctx, a, aoff, b, boff, k):
    """sum_p a[aoff + p] * b[boff + p] for p < k, in a fixed order on every vector ISA.

    Lane ``l`` of a 16-lane accumulator takes ``p = l, l+16, ...`` by fused multiply-adds in
    order; the tail (``k % 16`` terms) is one scalar chain; the result is the pairwise tree of
    the lanes (8+8, 4+4, 2+2, 1+1) plus the tail. LLVM splits the 16-lane vectors into the
    host's registers without reordering anything.
    """
    ok = all(isinstance(x, types.Array) and x.dtype == types.float32 for x in (a, b))
    if not ok:
        return None
    sig = types.float32(a, aoff, b, boff, k)

    def codegen(context, builder, signature, args):
        aty = signature.args
        aoff_i, boff_i, k_i = (
            context.cast(builder, args[i], aty[i], types.int64) for i in (1, 3, 4)
        )
        abase = builder.gep(context.make_array(aty[0])(context, builder, args[0]).data, [aoff_i])
        bbase = builder.gep(context.make_array(aty[2])(context, builder, args[2]).data, [boff_i])
        vty = ir.VectorType(_F32, DOT_LANES)
        fma_v = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fmuladd.v{DOT_LANES}f32"
        )
        fma_s = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_F32, [_F32] * 3), "llvm.fmuladd.f32"
        )
        acc = cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * DOT_LANES))
        nvec = builder.mul(builder.sdiv(k_i, _c(DOT_LANES)), _c(DOT_LANES))
        with cgutils.for_range_slice(builder, _c(0), nvec, _c(DOT_LANES)) as (p, _):
            x = builder.load(_vptr(builder, abase, p, DOT_LANES), align=4)
            y = builder.load(_vptr(builder, bbase, p, DOT_LANES), align=4)
            builder.store(builder.call(fma_v, [x, y, builder.load(acc)]), acc)
        tail = cgutils.alloca_once_value(builder, ir.Constant(_F32, 0.0))
        with cgutils.for_range_slice(builder, nvec, k_i, _c(1)) as (p, _):
            x = builder.load(builder.gep(abase, [p]), align=4)
            y = builder.load(builder.gep(bbase, [p]), align=4)
            builder.store(builder.call(fma_s, [x, y, builder.load(tail)]), tail)
        v = builder.load(acc)
        width = DOT_LANES
        while width > 1:
            half = width // 2
            lo = builder.shuffle_vector(
                v, v, ir.Constant(ir.VectorType(_I32, half), list(range(half)))
            )
            hi = builder.shuffle_vector(
                v, v, ir.Constant(ir.VectorType(_I32, half), list(range(half, width)))
            )
            v = builder.fadd(lo, hi)
            width = half
        total = builder.extract_element(v, ir.Constant(_I32, 0))
        return builder.fadd(total, builder.load(tail))

    return sig, codegen
