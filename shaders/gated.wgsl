// Y[t, j] = act(GU[t, j]) · GU[t, F + j]: the gated feed-forward's combination of its gate and
// up projections (Llama's silu(gate(x)) * up(x)), computed by one matmul into GU as
// [gate | up]. One invocation per output. Needs common.wgsl and activations.wgsl.
struct Params {
    f: u32,   // features F of the output (GU has 2F)
    act: u32, // ACT_* applied to the gate
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> GU: array<f32>;       // (T, 2F): gate | up
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;  // (T, F)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || j >= p.f) {
        return;
    }
    let g = GU[t * 2u * p.f + j];
    let u = GU[t * 2u * p.f + p.f + j];
    Y[t * p.f + j] = activate(g, p.act) * u;
}
