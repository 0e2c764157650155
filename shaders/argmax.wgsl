// Greedy decoding, first half of the argmax over the last row of logits the LM head computed
// (row step.n_rows - 1). Invocation i of L = p.lanes scans values i, i + L, i + 2L, … (so
// neighbouring invocations read neighbouring values) and writes its candidate: the largest
// value it saw and where (see argmax_common.wgsl). argmax_pick.wgsl then reduces the L
// candidates. No barriers or workgroup memory (the barrier-free family; argmax_wide.wgsl is
// the cooperative one).
// Needs common.wgsl and argmax_common.wgsl.
@group(0) @binding(2) var<storage, read> logits: array<f32>;          // (R, V)
@group(0) @binding(3) var<storage, read_write> best: array<vec2<u32>>; // (L + 1) (f32 bits, index) candidates

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.lanes) {
        return;
    }
    let row = (step.n_rows - 1u) * p.v;
    var m = 0.0;
    var at = p.v;
    for (var j = i; j < p.v; j += p.lanes) {
        let x = logits[row + j];
        let c = select(NON_FINITE, j, is_finite_bits(x));
        if (replaces(m, at, x, c)) {
            m = x;
            at = c;
        }
    }
    best[i] = vec2<u32>(bitcast<u32>(m), at);
}
