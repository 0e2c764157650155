//! Bit-exactness against the `gguf` Python package (llama.cpp's own reference code), on the
//! fixtures of `tools/make_quant_fixtures.py` in `tests/fixtures/quant/`: wgpt's Q8_0 and Q4_0
//! quantization gives the same bytes, and its dequantization of every block format the same
//! f32 values, bit for bit.

use super::{dequantize, quantize_q4_0, quantize_q8_0};
use crate::format::DType;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn floats(name: &str) -> Vec<f32> {
    read(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn dtype(name: &str) -> DType {
    match name {
        "Q8_0" => DType::Q8_0,
        "Q4_0" => DType::Q4_0,
        "Q4_1" => DType::Q4_1,
        "Q5_0" => DType::Q5_0,
        "Q5_1" => DType::Q5_1,
        "Q4_K" => DType::Q4K,
        "Q5_K" => DType::Q5K,
        "Q6_K" => DType::Q6K,
        other => panic!("unknown type {other}"),
    }
}

fn cases() -> Vec<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    m["cases"].as_array().unwrap().clone()
}

/// Same f32 bits (NaN never occurs in these fixtures).
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: value {i}: wgpt {g}, gguf {w}"
        );
    }
}

#[test]
fn quantization_matches_gguf_byte_for_byte() {
    let mut seen = 0;
    for c in cases().iter().filter(|c| c["kind"] == "quantize") {
        let ty = dtype(c["ggml_type"].as_str().unwrap());
        let x = floats(c["input"].as_str().unwrap());
        let want = read(c["expected"].as_str().unwrap());
        let got = match ty {
            DType::Q8_0 => quantize_q8_0(&x),
            DType::Q4_0 => quantize_q4_0(&x),
            other => panic!("no quantization to {other}"),
        };
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got
            .chunks(ty.block_bytes())
            .zip(want.chunks(ty.block_bytes()))
            .enumerate()
        {
            assert_eq!(g, w, "{ty} block {i}: wgpt {g:?}, gguf {w:?}");
        }
        let round = floats(c["roundtrip"].as_str().unwrap());
        assert_bits(&dequantize(ty, &got), &round, &format!("{ty} round trip"));
        seen += 1;
    }
    assert_eq!(seen, 2, "Q8_0 and Q4_0 cases");
}

#[test]
fn dequantization_matches_gguf_bit_for_bit() {
    let mut seen = Vec::new();
    for c in cases().iter().filter(|c| c["kind"] == "dequantize") {
        let ty = dtype(c["ggml_type"].as_str().unwrap());
        let blocks = read(c["input"].as_str().unwrap());
        let want = floats(c["expected"].as_str().unwrap());
        assert_bits(&dequantize(ty, &blocks), &want, &format!("{ty}"));
        seen.push(ty);
    }
    assert_eq!(seen.len(), 8, "one case per block format: {seen:?}");
}
