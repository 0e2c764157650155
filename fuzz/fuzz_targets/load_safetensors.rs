//! Feeds arbitrary bytes to the safetensors loader and its checks against a config: every
//! input must give `Ok` or `Err`, never a panic, a hang or an out-of-bounds read.
//!
//! ```sh
//! cargo install cargo-fuzz            # needs a nightly toolchain
//! mkdir -p fuzz/corpus/load_safetensors
//! cp tests/fixtures/tiny-*/model*.safetensors fuzz/corpus/load_safetensors/
//! cargo +nightly fuzz run load_safetensors -- -max_total_time=300
//! ```
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wgpt::inspect_safetensors;
use wgpt::Config;

/// The config of the `tiny-*` fixtures with original naming, so the seed corpus passes.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = include_str!("../../tests/fixtures/tiny-orig-f32/config.json");
        // The fixture is valid: a failure here is a broken checkout, not a finding.
        Config::from_json(text).expect("fixture config.json is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = inspect_safetensors(data, config());
    // The same bytes as a config.json.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_json(text);
    }
});
