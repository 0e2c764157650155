// Greedy decoding, second half of the argmax: one workgroup reduces the L candidates of
// argmax_wide.wgsl to the winner (see argmax_common.wgsl for the rule: the
// largest logit, the smallest index on ties, NON_FINITE when any logit was NaN or infinite).
// It writes the winner for the host to read (best[L]) and as the next step's token
// (tokens[0]; 0 when non-finite, which the host then reports), so that a decode step can be
// queued before the host has read this one's result. One small workgroup, once per step.
// Needs common.wgsl, argmax_common.wgsl and argmax_reduce.wgsl.
const WG: u32 = 64u;
@group(0) @binding(2) var<storage, read_write> best: array<vec2<u32>>; // (L + 1) candidates, then the winner
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;     // (B) token ids; [0] = winner

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {
    if (step.n_rows == 0u) {
        return; // no LM-head rows, nothing to pick (the forward pass launches none then)
    }
    var m = 0.0;
    var idx = p.v;
    for (var i = li; i < p.lanes; i += WG) {
        let c = best[i];
        if (replaces(m, idx, bitcast<f32>(c.x), c.y)) {
            m = bitcast<f32>(c.x);
            idx = c.y;
        }
    }
    let w = wg_best(m, idx, li, WG);
    if (li == 0u) {
        best[p.lanes] = w;
        tokens[0] = select(0u, w.y, w.y < p.v);
    }
}
