// Weight access, ggml block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): the
// kernels read the blocks themselves and dequantize in registers; arithmetic stays f32. The
// host prepends the format's constants (src/quant/pack.rs, `Layout::wgsl_constants`):
//   QFMT  format code (below)        QLOW  low-plane texels per block (8, or 16 for Q8_0)
//   QHIGH high-plane bits (0, 1, 2)  QT    texels per 32-weight block of 8 columns
//   QS    super-block texels (K formats: before each 8 blocks), else 0
//   QOFF  the offset subtracted from each quant (ggml's; Q8_0: the 128 added at upload)
//   QPOS  the factor a quant is read with, per column of a vec4 (quants are read in place, see
//         `nib8` and `byte8`): 16^(c mod 4) for 4-bit formats, (1, 256, 65536, 1) for Q8_0
// Layout of a texture row (one group of 8 columns, walking k): per 32-weight block the low
// plane (u32 j of a texel = row k + j, bits 4c or 8c = column c), the high plane, then the
// block's scale fields as the file stores them (f16 d / m; K formats' 6- or 8-bit sub-block
// scales as bytes); see src/quant/pack.rs. Every weight is ggml's exactly: w = a·(q − QOFF) + b
// with a = d (Q8_0, Q4_0, Q5_0), d·sc (K formats); b = m (Q4_1, Q5_1), −dmin·m (Q4_K, Q5_K),
// else 0 — all products exact in f32, so the one rounding is ggml's.
// W: (row texels, np / 8) texels, one row per 8 columns, read with `texel` (texel_*.wgsl).

const F_Q8_0: u32 = 0u;
const F_Q4_0: u32 = 1u;
const F_Q4_1: u32 = 2u;
const F_Q5_0: u32 = 3u;
const F_Q5_1: u32 = 4u;
const F_Q4_K: u32 = 5u;
const F_Q5_K: u32 = 6u;
const F_Q6_K: u32 = 7u;

// The affine map of 8 columns over one block: w = a·q + b (b includes −a·QOFF), and for Q6_K
// w = a·(q − QOFF) with `a1` the scale of the block's second 16 weights (= a0 elsewhere).
struct Coef {
    a0: W8,
    a1: W8,
    b: W8,
}

// Eight f16 values of a texel.
fn halves8(t: vec4<u32>) -> W8 {
    return W8(vec4<f32>(unpack2x16float(t.x), unpack2x16float(t.y)), vec4<f32>(unpack2x16float(t.z), unpack2x16float(t.w)));
}

// Byte `i` (0..4) of each u32 of a texel pair, as 8 floats (columns 0..7: t.x low half, …).
fn bytes8(t: vec4<u32>, shift: u32) -> W8 {
    let s = vec4<u32>(shift, shift + 16u, shift, shift + 16u);
    let lo = (vec4<u32>(t.x, t.x, t.y, t.y) >> s) & vec4<u32>(255u);
    let hi = (vec4<u32>(t.z, t.z, t.w, t.w) >> s) & vec4<u32>(255u);
    return W8(vec4<f32>(lo), vec4<f32>(hi));
}

// Signed byte `shift / 8` of each 16-bit half, as 8 floats (Q6_K's i8 scales).
fn sbytes8(t: vec4<u32>, shift: u32) -> W8 {
    let s = vec4<u32>(24u - shift, 8u - shift, 24u - shift, 8u - shift);
    let lo = bitcast<vec4<i32>>(vec4<u32>(t.x, t.x, t.y, t.y) << s) >> vec4<u32>(24u);
    let hi = bitcast<vec4<i32>>(vec4<u32>(t.z, t.z, t.w, t.w) << s) >> vec4<u32>(24u);
    return W8(vec4<f32>(lo), vec4<f32>(hi));
}

// First texel of block b (32 weights) of a texture row.
fn block_base(b: u32) -> u32 {
    if (QS == 0u) {
        return b * QT;
    }
    return (b >> 3u) * (QS + 8u * QT) + QS + (b & 7u) * QT;
}

// The block's affine maps for the 8 columns of texture row `row`, for quants read as q·QPOS.
fn coef(b: u32, row: u32) -> Coef {
    let c = coef_q(b, row);
    let s = 1.0 / QPOS; // exact: powers of two
    return Coef(W8(c.a0.lo * s, c.a0.hi * s), W8(c.a1.lo * s, c.a1.hi * s), c.b);
}

// The block's affine maps for the quants q themselves.
fn coef_q(b: u32, row: u32) -> Coef {
    let base = block_base(b);
    let sc = texel(base + QLOW + 2u * QHIGH, row);
    let zero = W8(vec4<f32>(0.0), vec4<f32>(0.0));
    if (QFMT == F_Q8_0 || QFMT == F_Q4_0 || QFMT == F_Q5_0) {
        // b = −d·QOFF (exact: QOFF is 8, 16 or 128), see `affine`.
        let d = halves8(sc);
        let off = f32(QOFF);
        return Coef(d, d, W8(-off * d.lo, -off * d.hi));
    }
    if (QFMT == F_Q4_1 || QFMT == F_Q5_1) {
        let d = halves8(sc);
        let m = halves8(texel(base + QLOW + 2u * QHIGH + 1u, row));
        return Coef(d, d, m);
    }
    let sb = (b >> 3u) * (QS + 8u * QT);
    let d = halves8(texel(sb, row));
    if (QFMT == F_Q6_K) {
        let s0 = sbytes8(sc, 0u);
        let s1 = sbytes8(sc, 8u);
        return Coef(W8(d.lo * s0.lo, d.hi * s0.hi), W8(d.lo * s1.lo, d.hi * s1.hi), zero);
    }
    // Q4_K, Q5_K
    let dmin = halves8(texel(sb + 1u, row));
    let s = bytes8(sc, 0u);
    let m = bytes8(sc, 8u);
    let a = W8(d.lo * s.lo, d.hi * s.hi);
    return Coef(a, a, W8(-(dmin.lo * m.lo), -(dmin.hi * m.hi)));
}

// The 8 nibbles of u (column c = bits 4c) as floats q·QPOS: masked in place, not shifted down,
// one AND and one conversion per weight (the factor 16^(c mod 4) is divided out of the
// block's scale in `coef`, exactly: a power of two).
fn nib8(u: u32) -> W8 {
    let m = vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);
    return W8(vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u) & m)), vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u >> 16u) & m)));
}

// The 8 bytes of (a, c) as floats q·QPOS (Q8_0, stored as q + 128): columns 0..3 from a,
// 4..7 from c; bytes 0..2 masked in place, byte 3 shifted down, so one integer operation and
// one conversion per weight (the factors 256^c are divided out of the block's scale in
// `coef`, exactly).
fn byte8(a: u32, c: u32) -> W8 {
    let m = vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xffffffffu);
    let s = vec4<u32>(0u, 0u, 0u, 24u);
    return W8(vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(a) >> s) & m)), vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(c) >> s) & m)));
}

// Fifth bits (bit c of h) as 16·bit·QPOS.
fn bit8(h: u32) -> W8 {
    let v = vec4<u32>(h);
    let f = 16.0 * QPOS;
    return W8(vec4<f32>((v >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) * f, vec4<f32>((v >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u)) * f);
}

// Q6_K's top two bits (bits 2c of h) as 16·bits·QPOS.
fn two8(h: u32) -> W8 {
    let v = vec4<u32>(h);
    let f = 16.0 * QPOS;
    return W8(vec4<f32>((v >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u)) * f, vec4<f32>((v >> vec4<u32>(8u, 10u, 12u, 14u)) & vec4<u32>(3u)) * f);
}

fn add8(a: W8, b: W8) -> W8 {
    return W8(a.lo + b.lo, a.hi + b.hi);
}

// The texels of one step (rows 4·st..4·st+4 of a block, 8 columns): the low plane (`t1`: Q8_0's
// second texel) and the high bits of Q5 (`h`) or Q6_K (`h2`).
struct Texels {
    t0: vec4<u32>,
    t1: vec4<u32>,
    h: u32,
    h2: vec2<u32>,
}

// Fetches the texels of step st of the block at texel `base`: one texel of the low plane (two
// for Q8_0) and, for Q5 / Q6_K, one of the high plane.
fn step_texels(base: u32, st: u32, row: u32) -> Texels {
    var r: Texels;
    if (QLOW == 16u) {
        r.t0 = texel(base + 2u * st, row);
        r.t1 = texel(base + 2u * st + 1u, row);
        return r;
    }
    r.t0 = texel(base + st, row);
    if (QHIGH == 1u) {
        // u32 st of the high plane: bit 8j + c.
        r.h = texel(base + QLOW + (st >> 2u), row)[st & 3u];
    }
    if (QHIGH == 2u) {
        // u32s 2·st and 2·st + 1: rows (0, 1) and (2, 3), bits 2·(8·(j mod 2) + c).
        let ht = texel(base + QLOW + (st >> 1u), row);
        r.h2 = select(ht.xy, ht.zw, (st & 1u) == 1u);
    }
    return r;
}

// Row j (0..4, a constant where called) of a step as floats q·QPOS (before the offset).
fn step_row(s: Texels, j: u32) -> W8 {
    if (QLOW == 16u) {
        let t = select(s.t0, s.t1, j >= 2u);
        let odd = (j & 1u) == 1u;
        return byte8(select(t.x, t.z, odd), select(t.y, t.w, odd));
    }
    var r = nib8(s.t0[j]);
    if (QHIGH == 1u) {
        r = add8(r, bit8(s.h >> (8u * j)));
    }
    if (QHIGH == 2u) {
        r = add8(r, two8(s.h2[j >> 1u] >> (16u * (j & 1u))));
    }
    return r;
}

// The quants of rows 4·st..4·st+4 of the block at texel `base`, 8 columns, as floats q·QPOS.
fn quants(base: u32, st: u32, row: u32) -> W4 {
    let s = step_texels(base, st, row);
    return W4(step_row(s, 0u), step_row(s, 1u), step_row(s, 2u), step_row(s, 3u));
}

// w = a·(q − QOFF) + b for one row, as fma(a, q, b − a·QOFF) where a·q is exact (every format
// but Q6_K, whose a·q can need 25 bits: there q − QOFF is formed first), so the one rounding
// is ggml's.
fn affine(q: W8, a: W8, b: W8) -> W8 {
    if (QFMT == F_Q6_K) {
        let off = f32(QOFF) * QPOS;
        return W8(a.lo * (q.lo - off), a.hi * (q.hi - off));
    }
    return W8(fma(a.lo, q.lo, b.lo), fma(a.hi, q.hi, b.hi));
}

// The block whose affine maps `cached` holds, as (block, texture row); reloaded when it
// changes (every 32 k on a walk along k).
var<private> cached_at: vec2<u32> = vec2<u32>(0xffffffffu, 0xffffffffu);
var<private> cached: Coef;

// W[k..k+4, n..n+8], k a multiple of 4 and n of 8: one or two texel loads for 32 weights, plus
// the block's scales once per 32 k.
fn w4(k: u32, n: u32) -> W4 {
    let b = k >> 5u;
    let row = n >> 3u;
    if (any(cached_at != vec2<u32>(b, row))) {
        cached_at = vec2<u32>(b, row);
        cached = coef(b, row);
    }
    let st = (k >> 2u) & 7u;
    var a = cached.a0;
    if (QFMT == F_Q6_K && st >= 4u) {
        a = cached.a1;
    }
    let q = quants(block_base(b), st, row);
    return W4(affine(q.r0, a, cached.b), affine(q.r1, a, cached.b), affine(q.r2, a, cached.b), affine(q.r3, a, cached.b));
}

// Eight consecutive weights W[k, n..n+8], n a multiple of 8.
fn w8(k: u32, n: u32) -> W8 {
    let b = k >> 5u;
    let row = n >> 3u;
    let c = coef(b, row);
    let st = (k >> 2u) & 7u;
    var a = c.a0;
    if (QFMT == F_Q6_K && st >= 4u) {
        a = c.a1;
    }
    let q = quants(block_base(b), st, row);
    var r = q.r0;
    switch (k & 3u) {
        case 1u: { r = q.r1; }
        case 2u: { r = q.r2; }
        case 3u: { r = q.r3; }
        default: {}
    }
    return affine(r, a, c.b);
}

// One weight W[k, n].
fn w1(k: u32, n: u32) -> f32 {
    let w = w8(k, n & ~7u);
    let c = n & 7u;
    if (c < 4u) {
        return w.lo[c];
    }
    return w.hi[c - 4u];
}
