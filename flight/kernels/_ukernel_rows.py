"""Direct-convolution micro-kernel for small feature maps: output pixels broadcast, channels in
the vector lanes (numba intrinsic, LLVM IR like :mod:`._ukernel`).

The main kernel (``ukernel_conv``) puts NR consecutive *virtual* pixels of the padded image in
the vector lanes. On a 7x7 map with a 3x3 kernel a padded row is 9 wide, so 63 virtual pixels
fill 64 lanes for 49 real ones: a quarter of the multiply-adds is thrown away (onnxruntime's
NCHWc layout wastes nothing there). This kernel turns the tile round: ``MT`` real pixels of one
output row are broadcast one at a time, and ``2 * VW`` output channels sit in two vectors read
from the *same* prepacked weight panels (two MR-row panels make one vector, so it needs
``VW == 2 * MR``: the AVX-512 path). No virtual pixel is computed.

Bits: every output is the same chain as in ``ukernel_conv``: per k-slice (``cb`` whole input
channels, as the packed panels are cut), ``acc = fmuladd(w, x, acc)`` over the taps (channel,
ki, kj) in order from 0, then the slices summed in order, the first one assigned. So results
are identical to the main kernel's, whichever is used (the tests compare them bit for bit).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._ukernel import _F32, _I32, MR, VW, _c

#: Output pixels of one row per tile (7 divides the usual small maps: 7, 14, 28, 56).
MT = 7
#: Output channels per tile: two vectors.
NT = 2 * VW
#: True when this kernel can run on the path: a vector is exactly two weight panels.
AVAILABLE = VW == 2 * MR

_NV = 2


@intrinsic
def ukernel_conv_rows(
    typingctx, wp, wbase, q0, mgp, cg, cb, kh, kw, x, xbase, s_c, s_h, s_w, out, obase, ldc, npix
):
    """out[obase + lane*ldc + i] = conv sum for NT channels x ``npix`` (<= MT) pixels.

    Weights: the packed panels of one group from ``wp[wbase]``: slice ``c0`` starts at
    ``wbase + c0*kh*kw*mgp``, its panel ``q`` ``q*kc*MR`` further (``kc`` the slice's taps), the
    tile's panels are ``q0 .. q0+3``, and tap ``p`` is another ``p*MR`` in. Image: pixel ``i``
    of tap (ch, ki, kj) of a slice at ``x[xbase + (c0+ch)*s_c + ki*s_h + kj*s_w + i]``. Writes
    the raw sums (no bias): the caller applies the epilogue as for the main kernel.
    """
    arrays = (wp, x, out)
    if not all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays):
        return None
    sig = types.void(
        wp, wbase, q0, mgp, cg, cb, kh, kw, x, xbase, s_c, s_h, s_w, out, obase, ldc, npix
    )

    def codegen(context, builder, signature, args):
        aty = signature.args
        ints = [
            context.cast(builder, args[i], aty[i], types.int64)
            for i in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16)
        ]
        wbase_i, q0_i, mgp_i, cg_i, cb_i, kh_i, kw_i = ints[:7]
        xbase_i, sc_i, sh_i, sw_i, obase_i, ldc_i, np_i = ints[7:]
        wdata = context.make_array(aty[0])(context, builder, args[0]).data
        xdata = context.make_array(aty[8])(context, builder, args[8]).data
        odata = context.make_array(aty[13])(context, builder, args[13]).data
        vty = ir.VectorType(_F32, VW)
        hty = ir.VectorType(_F32, MR)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fmuladd.v{VW}f32"
        )
        zero = ir.Constant(vty, [0.0] * VW)
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(_I32, VW), [0] * VW)
        join = ir.Constant(ir.VectorType(_I32, VW), list(range(VW)))
        accs = [[cgutils.alloca_once(builder, vty) for _ in range(_NV)] for _ in range(MT)]
        total = [[cgutils.alloca_once(builder, vty) for _ in range(_NV)] for _ in range(MT)]
        khw = builder.mul(kh_i, kw_i)
        nslices = builder.sdiv(builder.sub(builder.add(cg_i, cb_i), _c(1)), cb_i)
        with cgutils.for_range(builder, nslices) as ls:
            c0 = builder.mul(ls.index, cb_i)
            nch = builder.sub(cg_i, c0)
            nch = builder.select(builder.icmp_signed("<", cb_i, nch), cb_i, nch)
            panel = builder.mul(builder.mul(nch, khw), _c(MR))  # floats between panels
            wslice = builder.add(wbase_i, builder.mul(builder.mul(c0, khw), mgp_i))
            wslice = builder.add(wslice, builder.mul(q0_i, panel))
            for row in accs:
                for acc in row:
                    builder.store(zero, acc)
            wptr_slot = cgutils.alloca_once_value(builder, builder.gep(wdata, [wslice]))
            xslice = builder.gep(xdata, [builder.add(xbase_i, builder.mul(c0, sc_i))])
            with cgutils.for_range(builder, nch) as lc:
                xc = builder.gep(xslice, [builder.mul(lc.index, sc_i)])
                with cgutils.for_range(builder, kh_i) as lh:
                    xh = builder.gep(xc, [builder.mul(lh.index, sh_i)])
                    with cgutils.for_range(builder, kw_i) as lw:
                        xt = builder.gep(xh, [builder.mul(lw.index, sw_i)])
                        wptr = builder.load(wptr_slot)
                        halves = [
                            builder.load(
                                builder.bitcast(
                                    builder.gep(wptr, [builder.mul(panel, _c(j))]),
                                    hty.as_pointer(),
                                ),
                                align=4,
                            )
                            for j in range(2 * _NV)
                        ]
                        wv = [
                            builder.shuffle_vector(halves[2 * v], halves[2 * v + 1], join)
                            for v in range(_NV)
                        ]
                        for i in range(MT):
                            xi = builder.load(builder.gep(xt, [_c(i)]), align=4)
                            s = builder.shuffle_vector(
                                builder.insert_element(undef, xi, ir.Constant(_I32, 0)),
                                undef,
                                splat,
                            )
                            for v in range(_NV):
                                acc = accs[i][v]
                                builder.store(builder.call(fma, [wv[v], s, builder.load(acc)]), acc)
                        builder.store(builder.gep(wptr, [_c(MR)]), wptr_slot)
            first = builder.icmp_signed("==", ls.index, _c(0))
            for i in range(MT):
                for v in range(_NV):
                    a = builder.load(accs[i][v])
                    t = builder.load(total[i][v])
                    builder.store(builder.select(first, a, builder.fadd(t, a)), total[i][v])
        # transposed store: lane l of vector v is channel v*VW + l; pixel i is column i
        obase_p = builder.gep(odata, [obase_i])
        for i in range(MT):
            pred = builder.icmp_signed(">", np_i, _c(i))
            with builder.if_then(pred):
                for v in range(_NV):
                    t = builder.load(total[i][v])
                    for lane in range(VW):
                        ch = v * VW + lane
                        dst = builder.gep(obase_p, [builder.add(builder.mul(ldc_i, _c(ch)), _c(i))])
                        builder.store(
                            builder.extract_element(t, ir.Constant(_I32, lane)), dst, align=4
                        )
        return context.get_dummy_value()

    return sig, codegen
