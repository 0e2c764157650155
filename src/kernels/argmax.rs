//! `shaders/argmax_wide.wgsl` and `argmax_pick.wgsl`: greedy decoding's argmax over the last
//! logits, entirely on the GPU (cooperative family only, see `Kernels::argmax_on_gpu`). The
//! first leaves [`ARGMAX_LANES`] candidates, one per workgroup of 256; `argmax_pick` reduces
//! them to the winner, which it writes for the host ([`winner`]) and as the next step's
//! token.

use super::{Dispatch, Grid, Kernels};
use crate::gpu::Gpu;

/// Candidates the first half leaves.
pub(crate) const ARGMAX_LANES: usize = 256;

/// Bytes of `best`: the candidates, then the winner, (L + 1) × (f32 bits, index).
pub(crate) const ARGMAX_BYTES: usize = (ARGMAX_LANES + 1) * 8;

/// The index the winner carries when the row held a NaN or an infinity.
const NON_FINITE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    v: u32,
    lanes: u32,
    _pad: [u32; 2],
}

/// The two launches: candidates, then the winner.
pub(crate) struct Argmax {
    candidates: Dispatch,
    pick: Dispatch,
}

impl Argmax {
    /// Records both launches.
    pub fn encode(&self, rec: &mut super::Recorder<'_>, n_rows: u32) {
        self.candidates.encode(rec, 0, n_rows);
        self.pick.encode(rec, 0, n_rows);
    }
}

/// Over the last logits row the LM head computed (row `n_rows - 1`) of (R, V) `logits`:
/// `best[..L]` = candidates, `best[L]` = (max, index of the first max), and `tokens[0]` = that
/// index. best: (L + 1, 2) u32. `None` where the kernels have no argmax (barrier-free).
pub(crate) fn argmax(
    gpu: &Gpu,
    k: &Kernels,
    step: &wgpu::Buffer,
    vocab: usize,
    logits: &wgpu::Buffer,
    best: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
) -> Option<Argmax> {
    let [cand_pipe, pick_pipe] = k.argmax.as_ref()?;
    let params = Params {
        v: vocab as u32,
        lanes: ARGMAX_LANES as u32,
        _pad: [0; 2],
    };
    let candidates = Dispatch::new(
        gpu,
        "argmax",
        cand_pipe,
        step,
        &params,
        &[logits, best],
        Grid::Fixed {
            x: ARGMAX_LANES as u32, // workgroups of 256, one candidate each
        },
    );
    let pick = Dispatch::new(
        gpu,
        "argmax_pick",
        pick_pipe,
        step,
        &params,
        &[best, tokens],
        Grid::Fixed { x: 1 },
    );
    Some(Argmax { candidates, pick })
}

/// The token `best[L]` names, as read back (f32 bits, index); `None` when the row held a
/// non-finite value.
pub(crate) fn winner(best_l: [u32; 2]) -> Option<u32> {
    (best_l[1] != NON_FINITE).then_some(best_l[1])
}
