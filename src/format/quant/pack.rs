//! Repacking ggml blocks into the GPU layout that `shaders/weights_quant.wgsl` reads.
//!
//! A (K, N) weight matrix is a texture with one row per group of 8 output columns (as for the
//! float formats), and the kernels walk k for fixed columns. ggml's blocks run along k for one
//! column (one file row), and their 18-, 22- or 34-byte sizes do not align to 4-byte words, so
//! each 32-weight block of the 8 columns of a group is regrouped at upload into whole 16-byte
//! texels, in this order along the texture row:
//!
//! - **low plane** — the low 4 bits of each quant (Q8_0: the whole byte, as q + 128): one
//!   texel per 4 k (two for 8-bit), u32 j = row k + j, bits 4c (8c) = column c. One texel
//!   load gives the kernel 4 rows × 8 columns, where f16 needs four.
//! - **high plane** — Q5 formats: the fifth bit of each quant, u32 s of 8 = rows 4s..4s+4, bit
//!   8j + c; Q6_K: the top 2 bits, u32 2s + j/2, bits 2·(8·(j mod 2) + c).
//! - **scales** — the block's scale fields of the 8 columns as the file stores them: `d` (f16)
//!   for Q8_0/Q4_0/Q5_0; a texel of `d` and one of `m` for Q4_1/Q5_1; for Q4_K/Q5_K the 6-bit
//!   scale and min as bytes (u32 c/2, bits 16·(c mod 2): sc | m << 8); for Q6_K the two 8-bit
//!   scales of the block's 16-weight halves (same packing).
//! - K formats only: before the first block of each 256-weight super-block, its `d` (and
//!   `dmin`) for the 8 columns, one texel each.
//!
//! Nothing is converted: the kernel computes every weight from the same integers and f16 values
//! as ggml (see the module header of `crate::quant`), so the weights on the GPU are exactly the
//! file's. The cost over ggml's own size is the K formats' sub-block scales stored as whole
//! bytes: 4.625 bits per weight for Q4_K instead of 4.5, 5.625 for Q5_K; the other formats
//! keep ggml's size exactly.

use super::{decode_block, k_scale_min};
use crate::format::DType;

/// How one block format is laid out on the GPU (per 32 weights × 8 columns, in texels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bits of the low plane per quant: 4, or 8 for Q8_0.
    pub low_bits: u32,
    /// Bits of the high plane: 0, 1 (Q5 formats) or 2 (Q6_K).
    pub high_bits: u32,
    /// Scale texels per block.
    pub scale_texels: u32,
    /// Texels per 256-weight super-block before its blocks (K formats), else 0.
    pub super_texels: u32,
    /// Subtracted from each quant before scaling: ggml's signed offset (Q8_0: the 128 added
    /// at upload).
    pub offset: i32,
    /// The format's code in `weights_quant.wgsl`.
    pub code: u32,
}

impl Layout {
    /// The layout of a block format; `None` for float types.
    pub fn of(dtype: DType) -> Option<Layout> {
        let l = |low_bits, high_bits, scale_texels, super_texels, offset, code| Layout {
            low_bits,
            high_bits,
            scale_texels,
            super_texels,
            offset,
            code,
        };
        Some(match dtype {
            DType::Q8_0 => l(8, 0, 1, 0, 128, 0),
            DType::Q4_0 => l(4, 0, 1, 0, 8, 1),
            DType::Q4_1 => l(4, 0, 2, 0, 0, 2),
            DType::Q5_0 => l(4, 1, 1, 0, 16, 3),
            DType::Q5_1 => l(4, 1, 2, 0, 0, 4),
            DType::Q4K => l(4, 0, 1, 2, 0, 5),
            DType::Q5K => l(4, 1, 1, 2, 0, 6),
            DType::Q6K => l(4, 2, 1, 1, 32, 7),
            DType::F32 | DType::F16 | DType::BF16 => return None,
        })
    }

    /// Texels of the low plane per block.
    pub fn low_texels(self) -> u32 {
        self.low_bits * 2
    }

    /// Texels per 32-weight block of 8 columns.
    pub fn block_texels(self) -> u32 {
        self.low_texels() + 2 * self.high_bits + self.scale_texels
    }

    /// Texels per texture row for rows of `k` weights (a multiple of the block length).
    pub fn row_texels(self, k: usize) -> usize {
        k / 32 * self.block_texels() as usize + k / 256 * self.super_texels as usize
    }

    /// The constants `weights_quant.wgsl` is specialised with.
    pub fn wgsl_constants(self) -> String {
        format!(
            "const QFMT: u32 = {}u;\nconst QLOW: u32 = {}u;\nconst QHIGH: u32 = {}u;\n\
             const QT: u32 = {}u;\nconst QS: u32 = {}u;\nconst QOFF: i32 = {};\n\
             const QPOS: vec4<f32> = vec4<f32>({});\n",
            self.code,
            self.low_texels(),
            self.high_bits,
            self.block_texels(),
            self.super_texels,
            self.offset,
            match self.low_bits {
                4 => "1.0, 16.0, 256.0, 4096.0",
                _ => "1.0, 256.0, 65536.0, 1.0",
            }
        )
    }
}

/// The raw scale fields of one 32-weight block of one column.
#[derive(Clone, Copy, Default)]
struct Scales {
    /// `d` (f16 bits), or the super-block's `d` for K formats.
    d: u16,
    /// `m` or `dmin` (f16 bits).
    m: u16,
    /// Two bytes of per-block scales (K formats): sc | m << 8, or Q6_K's two i8 scales.
    sub: u16,
}

/// Quants (0 .. 2^bits; Q8_0: q + 128) and scale fields of block `b` (32 weights)
/// of a file row.
fn block32(
    dtype: DType,
    row: &[u8],
    b: usize,
    cache: &mut Option<(usize, Vec<u8>)>,
) -> ([u8; 32], Scales) {
    let f16 = |x: &[u8], i: usize| u16::from_le_bytes([x[i], x[i + 1]]);
    let (len, size) = (dtype.block_len(), dtype.block_bytes());
    let sb = b * 32 / len;
    let bytes = &row[sb * size..(sb + 1) * size];
    if cache.as_ref().map(|c| c.0) != Some(sb) {
        *cache = Some((sb, decode_block(dtype, bytes).q));
    }
    let q_all = &cache.as_ref().expect("set above").1;
    let first = (b * 32) % len;
    let mut q = [0u8; 32];
    q.copy_from_slice(&q_all[first..first + 32]);
    let i = b % 8; // sub-block within a super-block
    let s = match dtype {
        // decode_block shifts Q8_0 to 0..256, which the GPU reads (unsigned, like the nibbles:
        // fewer instructions than a sign extension); QOFF = 128 takes the offset back.
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => Scales {
            d: f16(bytes, 0),
            ..Default::default()
        },
        DType::Q4_1 | DType::Q5_1 => Scales {
            d: f16(bytes, 0),
            m: f16(bytes, 2),
            sub: 0,
        },
        DType::Q4K | DType::Q5K => {
            let (sc, m) = k_scale_min(&bytes[4..16], i);
            Scales {
                d: f16(bytes, 0),
                m: f16(bytes, 2),
                sub: sc as u16 | (m as u16) << 8,
            }
        }
        DType::Q6K => Scales {
            d: f16(bytes, 208),
            m: 0,
            sub: bytes[192 + 2 * i] as u16 | (bytes[193 + 2 * i] as u16) << 8,
        },
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("not a block format"),
    };
    (q, s)
}

/// Packs a (K, N) matrix whose column `n` is file row `row(n)` (K weights of `dtype` blocks)
/// into texture bytes: N/8 (rounded up) texture rows of `layout.row_texels(k)` texels.
pub(crate) fn pack_rows<'r>(
    dtype: DType,
    k: usize,
    n: usize,
    row: impl Fn(usize) -> &'r [u8],
) -> Vec<u8> {
    let layout = Layout::of(dtype).expect("a block format");
    let groups = n.div_ceil(8);
    let width = layout.row_texels(k);
    let mut out: Vec<u32> = Vec::with_capacity(groups * width * 4);
    for g in 0..groups {
        let cols: Vec<Option<&[u8]>> = (0..8)
            .map(|c| (8 * g + c < n).then(|| row(8 * g + c)))
            .collect();
        let mut caches: Vec<Option<(usize, Vec<u8>)>> = vec![None; 8];
        for b in 0..k / 32 {
            let mut q = [[0u8; 32]; 8];
            let mut s = [Scales::default(); 8];
            for c in 0..8 {
                if let Some(r) = cols[c] {
                    (q[c], s[c]) = block32(dtype, r, b, &mut caches[c]);
                }
            }
            let pairs = |f: &dyn Fn(&Scales) -> u16| -> [u32; 4] {
                std::array::from_fn(|w| f(&s[2 * w]) as u32 | (f(&s[2 * w + 1]) as u32) << 16)
            };
            if layout.super_texels > 0 && b % 8 == 0 {
                out.extend(pairs(&|s| s.d));
                if layout.super_texels == 2 {
                    out.extend(pairs(&|s| s.m));
                }
            }
            // Low plane.
            for st in 0..8 {
                let rows = 4 * st..4 * st + 4;
                if layout.low_bits == 4 {
                    for j in rows {
                        out.push((0..8).map(|c| ((q[c][j] & 15) as u32) << (4 * c)).sum());
                    }
                } else {
                    for j in rows {
                        for half in 0..2 {
                            out.push((0..4).map(|c| (q[4 * half + c][j] as u32) << (8 * c)).sum());
                        }
                    }
                }
            }
            // High plane.
            match layout.high_bits {
                1 => {
                    for st in 0..8 {
                        let mut w = 0u32;
                        for j in 0..4 {
                            for (c, qc) in q.iter().enumerate() {
                                w |= ((qc[4 * st + j] >> 4) as u32 & 1) << (8 * j + c);
                            }
                        }
                        out.push(w);
                    }
                }
                2 => {
                    for st in 0..8 {
                        for pair in 0..2 {
                            let mut w = 0u32;
                            for jj in 0..2 {
                                for (c, qc) in q.iter().enumerate() {
                                    let v = (qc[4 * st + 2 * pair + jj] >> 4) as u32 & 3;
                                    w |= v << (2 * (8 * jj + c));
                                }
                            }
                            out.push(w);
                        }
                    }
                }
                _ => {}
            }
            // Scales.
            match dtype {
                DType::Q4K | DType::Q5K | DType::Q6K => out.extend(pairs(&|s| s.sub)),
                _ => {
                    out.extend(pairs(&|s| s.d));
                    if layout.scale_texels == 2 {
                        out.extend(pairs(&|s| s.m));
                    }
                }
            }
        }
        debug_assert_eq!(out.len(), (g + 1) * width * 4);
    }
    bytemuck::cast_slice(&out).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_ggml_except_the_k_formats_sub_scales() {
        // bits per weight = texels · 128 / (32 · 8)
        let bpw = |d: DType| Layout::of(d).unwrap().row_texels(256) as f64 * 128.0 / 2048.0;
        assert_eq!(bpw(DType::Q8_0), 8.5);
        assert_eq!(bpw(DType::Q4_0), 4.5);
        assert_eq!(bpw(DType::Q4_1), 5.0);
        assert_eq!(bpw(DType::Q5_0), 5.5);
        assert_eq!(bpw(DType::Q5_1), 6.0);
        assert_eq!(bpw(DType::Q4K), 4.625);
        assert_eq!(bpw(DType::Q5K), 5.625);
        assert_eq!(bpw(DType::Q6K), 6.5625);
    }
}
