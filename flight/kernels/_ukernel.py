"""Register-blocked GEMM micro-kernels and packing helpers, emitted as LLVM IR (numba intrinsics).

Why IR and not plain numba: numba disables LLVM's SLP vectoriser, so a hand-unrolled tile of
scalar accumulators compiles to scalar FMAs (~4 GFLOP/s here), and numba's negative-index check
on every ``a[i + off]`` stops the loop vectoriser from vectorising packing copies. Writing the
``MR x NR`` tile as ``<VW x float>`` vectors (the tile and width follow the host's vector ISA:
:mod:`.isa`) makes the kernel run near the core's peak, like a BLAS micro-kernel.

Determinism: a tile is computed as ``acc = fmuladd(a[p], b[p], acc)`` for ``p = 0 .. kc-1`` in
that order, lane by lane; there is no horizontal reduction and no reassociation. ``llvm.fmuladd``
lets the backend pick a fused or an unfused multiply-add once, at compile time, for the target
CPU, so the same compiled code (the same numba cache entry) always returns the same bits. Across
different CPUs the choice may differ (FMA vs. no FMA), which is why the numba cache is seeded per
CPU. No fastmath flags are used anywhere in flight.kernels.

Packed layouts (see ``gemm.py``):
    ap[aoff + p * MR + i]   = A[i, p]   (an MR-row micro-panel of A, k-major)
    bp[boff + p * ldb + j]  = B[p, j]   (NR columns of B: a packed micro-panel when ldb == NR,
                                         or a row-major block whose rows are ldb apart)
No intrinsic checks bounds: the callers own the tiling.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .isa import PATH

#: Rows of the register tile (rows of A / output channels in a convolution).
MR = PATH.mr
#: Columns of the register tile (columns of B / output pixels in a convolution).
NR = PATH.nr
#: SIMD width in float32 lanes that the IR is written for (chosen for the host: see :mod:`.isa`).
VW = PATH.vw
_NV = NR // VW

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_F32 = ir.FloatType()
_VTY = ir.VectorType(_F32, VW)


def _f32_array(*arrs) -> bool:
    return all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrs)


def _c(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


def _ints(context, builder, sig, args, idx):
    return [context.cast(builder, args[i], sig.args[i], types.int64) for i in idx]


def _vload(builder, ptr, off, vty=_VTY):
    return builder.load(builder.bitcast(builder.gep(ptr, [_c(off)]), vty.as_pointer()), align=4)


def _vstore(builder, val, ptr, off, vty=_VTY):
    builder.store(val, builder.bitcast(builder.gep(ptr, [_c(off)]), vty.as_pointer()), align=4)


class _Tile:
    """MR x NR accumulators (allocas that LLVM promotes to vector registers).

    ``path`` (default: the host's) sets the tile and vector width; another path's tile is built
    only by the tests, which compile it for that path's CPU and read the machine code.
    """

    def __init__(self, builder, path=PATH):
        self.mr, self.vw, self.nv = path.mr, path.vw, path.nr // path.vw
        self.vty = ir.VectorType(_F32, self.vw)
        zero = ir.Constant(self.vty, [0.0] * self.vw)
        self.accs = [
            [cgutils.alloca_once_value(builder, zero) for _ in range(self.nv)]
            for _ in range(self.mr)
        ]
        self.fma = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(self.vty, [self.vty] * 3),
            f"llvm.fmuladd.v{self.vw}f32",
        )

    def update(self, builder, aptr, bptr):
        """acc[i] += aptr[i] * bptr[0:NR] for every row i."""
        vw, vty = self.vw, self.vty
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(_I32, vw), [0] * vw)
        bv = [_vload(builder, bptr, v * vw, vty) for v in range(self.nv)]
        for i in range(self.mr):
            a = builder.load(builder.gep(aptr, [_c(i)]), align=4)
            s = builder.shuffle_vector(
                builder.insert_element(undef, a, ir.Constant(_I32, 0)), undef, splat
            )
            for v in range(self.nv):
                acc = self.accs[i][v]
                builder.store(builder.call(self.fma, [s, bv[v], builder.load(acc)]), acc)

    def store(self, builder, cbase, ldc, mr, acc_flag):
        """C rows i < mr: C[i*ldc + j] = acc (or += acc when acc_flag)."""
        vw, vty = self.vw, self.vty
        for i in range(self.mr):
            pred = builder.icmp_signed(">", mr, _c(i)) if i > 0 else None
            blk = builder.if_then(pred) if pred is not None else _null()
            with blk:
                row = builder.gep(cbase, [builder.mul(ldc, _c(i))])
                with builder.if_else(acc_flag) as (add, put):
                    with add:
                        for v in range(self.nv):
                            val = builder.fadd(
                                _vload(builder, row, v * vw, vty), builder.load(self.accs[i][v])
                            )
                            _vstore(builder, val, row, v * vw, vty)
                    with put:
                        for v in range(self.nv):
                            _vstore(builder, builder.load(self.accs[i][v]), row, v * vw, vty)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@intrinsic
def ukernel(typingctx, kc, ap, aoff, bp, boff, ldb, c, coff, ldc, mr, accumulate):
    """C[coff + i*ldc + j] (+)= sum_p ap[aoff + p*MR + i] * bp[boff + p*ldb + j], i < mr, j < NR.

    ``c`` must be a C-contiguous float32 array (any rank; it is addressed flat). ``accumulate``
    true adds to C, otherwise C is overwritten. Rows i >= mr are computed but not stored.
    """
    if not _f32_array(ap, bp, c) or c.layout != "C":
        return None
    sig = types.void(kc, ap, aoff, bp, boff, ldb, c, coff, ldc, mr, accumulate)

    def codegen(context, builder, signature, args):
        aty = signature.args
        kc_i, aoff_i, boff_i, ldb_i, coff_i, ldc_i, mr_i = _ints(
            context, builder, signature, args, (0, 2, 4, 5, 7, 8, 9)
        )
        acc_b = context.cast(builder, args[10], aty[10], types.boolean)
        apa = context.make_array(aty[1])(context, builder, args[1])
        bpa = context.make_array(aty[3])(context, builder, args[3])
        ca = context.make_array(aty[6])(context, builder, args[6])
        tile = _Tile(builder)
        abase = builder.gep(apa.data, [aoff_i])
        bbase = builder.gep(bpa.data, [boff_i])
        with cgutils.for_range(builder, kc_i) as loop:
            p = loop.index
            tile.update(
                builder,
                builder.gep(abase, [builder.mul(p, _c(MR))]),
                builder.gep(bbase, [builder.mul(p, ldb_i)]),
            )
        tile.store(builder, builder.gep(ca.data, [coff_i]), ldc_i, mr_i, acc_b)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def ukernel_conv(
    typingctx, nch, kh, kw, s_c, s_h, s_w, ap, aoff, x, xoff, c, coff, ldc, mr, accumulate
):
    """Direct-convolution micro-kernel: B is read in place from a (padded) image.

    Row p = (ch, ki, kj) (ch < nch, ki < kh, kj < kw, in that nesting) of B is the NR floats at
    ``x[xoff + ch*s_c + ki*s_h + kj*s_w :][:NR]``; A is a packed panel with ``kc = nch*kh*kw``.
    Stores like :func:`ukernel`.
    """
    if not _f32_array(ap, x, c) or c.layout != "C":
        return None
    sig = types.void(nch, kh, kw, s_c, s_h, s_w, ap, aoff, x, xoff, c, coff, ldc, mr, accumulate)

    def codegen(context, builder, signature, args):
        aty = signature.args
        nch_i, kh_i, kw_i, sc_i, sh_i, sw_i, aoff_i, xoff_i, coff_i, ldc_i, mr_i = _ints(
            context, builder, signature, args, (0, 1, 2, 3, 4, 5, 7, 9, 11, 12, 13)
        )
        acc_b = context.cast(builder, args[14], aty[14], types.boolean)
        apa = context.make_array(aty[6])(context, builder, args[6])
        xa = context.make_array(aty[8])(context, builder, args[8])
        ca = context.make_array(aty[10])(context, builder, args[10])
        tile = _Tile(builder)
        aptr_slot = cgutils.alloca_once_value(builder, builder.gep(apa.data, [aoff_i]))
        xbase = builder.gep(xa.data, [xoff_i])
        with cgutils.for_range(builder, nch_i) as lc:
            xc = builder.gep(xbase, [builder.mul(lc.index, sc_i)])
            with cgutils.for_range(builder, kh_i) as lh:
                xh = builder.gep(xc, [builder.mul(lh.index, sh_i)])
                with cgutils.for_range(builder, kw_i) as lw:
                    aptr = builder.load(aptr_slot)
                    tile.update(builder, aptr, builder.gep(xh, [builder.mul(lw.index, sw_i)]))
                    builder.store(builder.gep(aptr, [_c(MR)]), aptr_slot)
        tile.store(builder, builder.gep(ca.data, [coff_i]), ldc_i, mr_i, acc_b)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def strided_copy(typingctx, dst, doff, src, soff, sstride, n, total):
    """dst[doff + j] = src_flat[soff + j*sstride] for j < n, then 0.0 for n <= j < total.

    Offsets and the stride count float32 elements from each array's data pointer (use
    ``arr.strides[d] // 4``). When ``n == total == NR`` and ``sstride == 1`` the copy is two vector
    moves; a unit-stride copy is a plain loop that LLVM vectorises.
    """
    if not _f32_array(dst, src):
        return None
    sig = types.void(dst, doff, src, soff, sstride, n, total)

    def codegen(context, builder, signature, args):
        aty = signature.args
        doff_i, soff_i, ss_i, n_i, tot_i = _ints(context, builder, signature, args, (1, 3, 4, 5, 6))
        da = context.make_array(aty[0])(context, builder, args[0])
        sa = context.make_array(aty[2])(context, builder, args[2])
        dbase = builder.gep(da.data, [doff_i])
        sbase = builder.gep(sa.data, [soff_i])
        fast = builder.and_(
            builder.and_(
                builder.icmp_signed("==", n_i, _c(NR)), builder.icmp_signed("==", tot_i, _c(NR))
            ),
            builder.icmp_signed("==", ss_i, _c(1)),
        )
        with builder.if_else(fast) as (then, otherwise):
            with then:
                for v in range(_NV):
                    _vstore(builder, _vload(builder, sbase, v * VW), dbase, v * VW)
            with otherwise:
                unit = builder.icmp_signed("==", ss_i, _c(1))
                with builder.if_else(unit) as (contiguous, strided):
                    with contiguous, cgutils.for_range(builder, n_i) as loop:
                        j = loop.index
                        val = builder.load(builder.gep(sbase, [j]), align=4)
                        builder.store(val, builder.gep(dbase, [j]), align=4)
                    with strided:
                        # stride 2 (strided convolutions' patch rows): two vector loads and an
                        # even-lane shuffle per VW floats, stopping while the odd lanes stay
                        # inside the source; the rest lane by lane
                        is2 = builder.icmp_signed("==", ss_i, _c(2))
                        nvec = builder.select(
                            is2,
                            builder.mul(builder.sdiv(builder.sub(n_i, _c(1)), _c(VW)), _c(VW)),
                            _c(0),
                        )
                        even = ir.Constant(ir.VectorType(_I32, VW), [2 * i for i in range(VW)])
                        with cgutils.for_range_slice(builder, _c(0), nvec, _c(VW)) as (j, _):
                            s2 = builder.mul(j, _c(2))
                            lo = _vload(builder, builder.gep(sbase, [s2]), 0)
                            hi = _vload(builder, builder.gep(sbase, [s2]), VW)
                            _vstore(
                                builder,
                                builder.shuffle_vector(lo, hi, even),
                                builder.gep(dbase, [j]),
                                0,
                            )
                        with cgutils.for_range_slice(builder, nvec, n_i, _c(1)) as (j, _):
                            val = builder.load(builder.gep(sbase, [builder.mul(j, ss_i)]), align=4)
                            builder.store(val, builder.gep(dbase, [j]), align=4)
                with cgutils.for_range(builder, tot_i, start=n_i) as loop:
                    builder.store(ir.Constant(_F32, 0.0), builder.gep(dbase, [loop.index]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pack_panel(typingctx, dst, doff, src, soff, srow, scol, mr, kc):
    """dst[doff + p*MR + i] = src_flat[soff + i*srow + p*scol] (i < mr), 0.0 for mr <= i < MR.

    Packs one MR-row micro-panel of A for ``p < kc`` (offsets/strides in float32 elements).
    """
    if not _f32_array(dst, src):
        return None
    sig = types.void(dst, doff, src, soff, srow, scol, mr, kc)

    def codegen(context, builder, signature, args):
        aty = signature.args
        doff_i, soff_i, sr_i, scol_i, mr_i, kc_i = _ints(
            context, builder, signature, args, (1, 3, 4, 5, 6, 7)
        )
        da = context.make_array(aty[0])(context, builder, args[0])
        sa = context.make_array(aty[2])(context, builder, args[2])
        dbase = builder.gep(da.data, [doff_i])
        sbase = builder.gep(sa.data, [soff_i])
        rows = [builder.gep(sbase, [builder.mul(sr_i, _c(i))]) for i in range(MR)]
        full = builder.icmp_signed("==", mr_i, _c(MR))
        zero = ir.Constant(_F32, 0.0)
        with builder.if_else(full) as (then, otherwise):
            for is_full in (True, False):
                with then if is_full else otherwise, cgutils.for_range(builder, kc_i) as loop:
                    p = loop.index
                    so = builder.mul(p, scol_i)
                    do = builder.mul(p, _c(MR))
                    for i in range(MR):
                        dptr = builder.gep(dbase, [builder.add(do, _c(i))])
                        if is_full:
                            val = builder.load(builder.gep(rows[i], [so]), align=4)
                            builder.store(val, dptr, align=4)
                        else:
                            with builder.if_else(builder.icmp_signed(">", mr_i, _c(i))) as (ld, zf):
                                with ld:
                                    val = builder.load(builder.gep(rows[i], [so]), align=4)
                                    builder.store(val, dptr, align=4)
                                with zf:
                                    builder.store(zero, dptr, align=4)
        return context.get_dummy_value()

    return sig, codegen
