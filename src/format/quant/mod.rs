//! ggml's block formats on the CPU: the reference dequantization of every format wgpt reads
//! (bit-exact with ggml and the `gguf` Python package), the reference quantization of the two
//! formats `--dtype` makes (Q8_0, Q4_0), and the repacking of blocks into the GPU layout the
//! `weights_q*.wgsl` readers expect ([`pack`]).
//!
//! Block layouts (little-endian; `d`, `m`, `dmin` are f16):
//! - Q8_0 (34 B / 32): `d`, `qs[32]` i8; w = d·q.
//! - Q4_0 (18 B / 32): `d`, `qs[16]`: weight j < 16 is the low nibble of `qs[j]`, j ≥ 16 the
//!   high nibble of `qs[j - 16]`; w = d·(q − 8).
//! - Q4_1 (20 B / 32): `d`, `m`, `qs[16]` as Q4_0; w = d·q + m.
//! - Q5_0 (22 B / 32): `d`, `qh` (u32: bit j is weight j's fifth bit), `qs[16]`; w = d·(q − 16).
//! - Q5_1 (24 B / 32): `d`, `m`, `qh`, `qs[16]`; w = d·q + m.
//! - Q4_K (144 B / 256): `d`, `dmin`, `scales[12]` (eight 6-bit scales and mins), `qs[128]`:
//!   sub-block 2c (c = 0..4) is the low nibbles of `qs[32c..32c+32]`, 2c+1 the high ones;
//!   w = (d·sc)·q − dmin·m.
//! - Q5_K (176 B / 256): `d`, `dmin`, `scales[12]`, `qh[32]` (bit i of `qh[l]` is the fifth bit
//!   of weight l of sub-block i), `qs[128]` as Q4_K.
//! - Q6_K (210 B / 256): `ql[128]`, `qh[64]`, `scales[16]` i8 (one per 16 weights), `d`;
//!   w = (d·sc)·(q − 32).
//!
//! Every product above except the last rounding is exact in f32 (a 11-bit f16 significand
//! times integers of at most 14 bits), so the result does not depend on the order of the
//! multiplications or on fused multiply-adds: the GPU kernels give the same weights.

pub(crate) mod pack;

use crate::format::DType;

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_K / Q5_K: the 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes.
pub(crate) fn k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// One block's integer quants and the affine map of each weight: w = a·(q − offset) + b, with
/// `a` and `b` per group of `group` weights (16 or 32), exactly as ggml computes them.
pub(crate) struct Decoded {
    pub q: Vec<u8>,
    /// (a, b) per group.
    pub ab: Vec<(f32, f32)>,
    pub group: usize,
    pub offset: i32,
    /// w = a·(q − offset), no `b` (Q8_0, Q4_0, Q5_0, Q6_K).
    pub offset_only: bool,
}

/// Decodes one block of `dtype` (a block format).
pub(crate) fn decode_block(dtype: DType, b: &[u8]) -> Decoded {
    let nib = |qs: &[u8], j: usize| -> u8 {
        if j < 16 {
            qs[j] & 15
        } else {
            qs[j - 16] >> 4
        }
    };
    let bit = |qh: u32, j: usize| -> u8 { ((qh >> j) & 1) as u8 };
    match dtype {
        DType::Q8_0 => Decoded {
            q: b[2..34]
                .iter()
                .map(|&x| (x as i8 as i32 + 128) as u8)
                .collect(),
            ab: vec![(f16_at(b, 0), 0.0)],
            group: 32,
            offset: 128,
            offset_only: true,
        },
        DType::Q4_0 => Decoded {
            q: (0..32).map(|j| nib(&b[2..], j)).collect(),
            ab: vec![(f16_at(b, 0), 0.0)],
            group: 32,
            offset: 8,
            offset_only: true,
        },
        DType::Q4_1 => Decoded {
            q: (0..32).map(|j| nib(&b[4..], j)).collect(),
            ab: vec![(f16_at(b, 0), f16_at(b, 2))],
            group: 32,
            offset: 0,
            offset_only: false,
        },
        DType::Q5_0 => {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            Decoded {
                q: (0..32)
                    .map(|j| nib(&b[6..], j) | (bit(qh, j) << 4))
                    .collect(),
                ab: vec![(f16_at(b, 0), 0.0)],
                group: 32,
                offset: 16,
                offset_only: true,
            }
        }
        DType::Q5_1 => {
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            Decoded {
                q: (0..32)
                    .map(|j| nib(&b[8..], j) | (bit(qh, j) << 4))
                    .collect(),
                ab: vec![(f16_at(b, 0), f16_at(b, 2))],
                group: 32,
                offset: 0,
                offset_only: false,
            }
        }
        DType::Q4K | DType::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = if dtype == DType::Q5K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            let mut q = Vec::with_capacity(256);
            let mut ab = Vec::with_capacity(8);
            for i in 0..8 {
                let (sc, m) = k_scale_min(scales, i);
                ab.push((d * sc as f32, -(dmin * m as f32)));
                for l in 0..32 {
                    let byte = qs[32 * (i / 2) + l];
                    let mut v = if i % 2 == 0 { byte & 15 } else { byte >> 4 };
                    if let Some(qh) = qh {
                        v |= ((qh[l] >> i) & 1) << 4;
                    }
                    q.push(v);
                }
            }
            Decoded {
                q,
                ab,
                group: 32,
                offset: 0,
                offset_only: false,
            }
        }
        DType::Q6K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            let mut q = vec![0u8; 256];
            for (i, v) in q.iter_mut().enumerate() {
                let (h, r) = (i / 128, i % 128);
                let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 15;
                let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
                *v = low | (high << 4);
            }
            Decoded {
                q,
                ab: (0..16).map(|i| (d * sc[i] as i8 as f32, 0.0)).collect(),
                group: 16,
                offset: 32,
                offset_only: true,
            }
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("not a block format"),
    }
}

impl Decoded {
    /// Weight `j` of the block, as ggml dequantizes it (formats without a `b` add nothing, so
    /// that a negative scale times a zero quant stays −0 as in ggml).
    pub fn weight(&self, j: usize) -> f32 {
        let (a, b) = self.ab[j / self.group];
        let w = a * (self.q[j] as i32 - self.offset) as f32;
        match self.offset_only {
            true => w,
            false => w + b,
        }
    }
}

/// ggml's dequantization of `bytes` (whole blocks of `dtype`).
pub(crate) fn dequantize(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let (len, size) = (dtype.block_len(), dtype.block_bytes());
    let mut out = Vec::with_capacity(bytes.len() / size * len);
    for block in bytes.chunks_exact(size) {
        let d = decode_block(dtype, block);
        out.extend((0..len).map(|j| d.weight(j)));
    }
    out
}

/// ggml's reference quantization (`quantize_row_q8_0_ref`) of whole blocks of 32 values.
pub(crate) fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for block in x.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        // roundf: halves away from zero.
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// ggml's reference quantization (`quantize_row_q4_0_ref`) of whole blocks of 32 values: the
/// scale maps the value of largest magnitude (the first, on ties) to −8; x·id + 8.5 is
/// truncated after rounding to f32 twice (the product, then the sum), as ggml's C is written
/// and as the `gguf` package computes it. (Exact arithmetic differs where the sum lands a hair
/// below a whole number, which f16 weights make common: x = max/16 gives 7.99999999… exactly
/// but 8.0 in f32.)
pub(crate) fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 18);
    for block in x.chunks_exact(32) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        // Two f32 roundings; Rust never fuses the multiply and the add.
        let q = |v: f32| ((v * id + 8.5f32).trunc() as i64).clamp(0, 15) as u8;
        out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
    }
    out
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_rounds_in_f32_as_ggml_and_gguf() {
        // A block of f16 weights (tiny-llama-gqa-f16's embedding, block 241): x = max/16
        // exactly, so x·id + 8.5 is 7.99999999… in exact arithmetic but 8.0 in f32, where
        // ggml and the gguf package compute it: the weight's code is 8, not 7.
        let max = half::f16::from_f32(-1.162_109_4).to_f32();
        let x = max / 16.0;
        let mut block = vec![0f32; 32];
        block[0] = max;
        block[12] = x;
        let q = quantize_q4_0(&block);
        let code = q[2 + 12] & 0x0f;
        assert_eq!(code, 8);
    }

    #[test]
    fn q8_0_round_trips_exact_multiples() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 16.0).collect();
        let q = quantize_q8_0(&x);
        assert_eq!(q.len(), 34);
        let y = dequantize(DType::Q8_0, &q);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 1.0 / 127.0, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_0_maps_the_largest_magnitude_to_minus_8() {
        let mut x = vec![0.0f32; 32];
        x[3] = -2.0;
        x[5] = 1.0;
        let q = quantize_q4_0(&x);
        let y = dequantize(DType::Q4_0, &q);
        assert_eq!(y[3], -2.0);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[5], 1.0);
    }
}
