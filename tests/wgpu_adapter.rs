//! Makes a missing adapter visible in `cargo test`'s result. Every GPU test skips itself (with
//! a note) when no adapter exists outside CI; this test fails instead, saying how many GPU
//! tests did not run, so a machine without a GPU or lavapipe never reports a silent pass.
//! Set `WGPT_ALLOW_NO_ADAPTER=1` to accept that on purpose. (Named to run after the other
//! test binaries: a failure here does not stop the tests that need no adapter.)

use wgpt::{Gpu, GpuOptions};

#[test]
fn an_adapter_is_present_or_skipping_is_explicit() {
    let opts = GpuOptions::default().with_prefer_cpu(true);
    let Err(e) = Gpu::new(&opts) else { return };
    let allowed = std::env::var("WGPT_ALLOW_NO_ADAPTER").is_ok_and(|v| v == "1");
    let message = format!(
        "no GPU adapter ({e}): every GPU test in this run was skipped (kernels, golden, \
         generation, robustness, default model, GPT-2-small). Install a Vulkan driver (e.g. \
         `apt-get install mesa-vulkan-drivers` for lavapipe), or set WGPT_ALLOW_NO_ADAPTER=1"
    );
    if allowed {
        eprintln!("WARNING: {message}");
    } else {
        panic!("{message}");
    }
}
