// Element-wise activation functions used in matmul epilogues.
const ACT_NONE: u32 = 0u;
const ACT_GELU_TANH: u32 = 1u; // gelu_new / gelu_pytorch_tanh
const ACT_GELU_ERF: u32 = 2u;  // gelu (exact)
const ACT_RELU: u32 = 3u;
const ACT_SILU: u32 = 4u;      // silu / swish: x·sigmoid(x)

// tanh that cannot overflow to NaN for large |u|.
fn tanh_safe(u: f32) -> f32 {
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

// erf(x), Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return 0.5 * x * (1.0 + tanh_safe(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
        case 2u: { return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)); }
        case 3u: { return max(x, 0.0); }
        case 4u: { return x / (1.0 + exp(-x)); }
        default: { return x; }
    }
}
