//! Feeds arbitrary bytes to the GGUF reader and every check `Model::load` runs on a GGUF file
//! without a GPU (metadata → config, tensor names, types, shapes and bounds, the tokenizer and
//! chat template rebuilt from metadata): every input must give `Ok` or `Err`, never a panic,
//! a hang, an out-of-bounds read or an allocation larger than the input allows.
//!
//! ```sh
//! cargo install cargo-fuzz            # needs a nightly toolchain
//! mkdir -p fuzz/corpus/load_gguf
//! cp tests/fixtures/gguf/*.gguf fuzz/corpus/load_gguf/
//! cargo +nightly fuzz run load_gguf -- -max_total_time=300 -max_len=4000000
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgpt::inspect_gguf(data);
});
