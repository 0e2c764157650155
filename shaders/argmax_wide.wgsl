// Greedy decoding, first half of the argmax over the last row of logits the LM head computed
// (row step.n_rows - 1), for hardware GPUs (the cooperative family only: on lavapipe reading
// the logits back and scanning them on the CPU is faster). Workgroup g of L = p.lanes
// workgroups of 256 takes the values at g·256 + i (+ multiples of 256·L) and reduces them in
// workgroup memory to its candidate (see argmax_common.wgsl). argmax_pick.wgsl then reduces
// the L candidates.
// Needs common.wgsl, argmax_common.wgsl and argmax_reduce.wgsl.
const WG: u32 = 256u;
@group(0) @binding(2) var<storage, read> logits: array<f32>;          // (R, V)
@group(0) @binding(3) var<storage, read_write> best: array<vec2<u32>>; // (L + 1) (f32 bits, index) candidates

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = (step.n_rows - 1u) * p.v;
    var m = 0.0;
    var idx = p.v;
    for (var j = wg.x * WG + li; j < p.v; j += WG * p.lanes) {
        let x = logits[row + j];
        let c = select(NON_FINITE, j, is_finite_bits(x));
        if (replaces(m, idx, x, c)) {
            m = x;
            idx = c;
        }
    }
    let w = wg_best(m, idx, li, WG);
    if (li == 0u) {
        best[wg.x] = w;
    }
}
