//! Repacking of ggml blocks into the GPU layout (see `shaders/weights_quant.wgsl`).
