// Sharing loaded X values between the 8 invocations of a lane group, with subgroup operations
// (used where the adapter has them, with subgroups of at least 8). Each invocation loads the
// vec4 at its own index (`x_own`), and `x_from{L}(own, i)` returns the value invocation L
// loaded (its index was i). One load per invocation instead of eight: on lavapipe a load costs
// a loop over the SIMD lanes, a broadcast is one register shuffle. The alternative without
// subgroups is lanes_plain.wgsl, with the same functions. The values are the kernel's
// `x_value(i)` (X[i], or matvec's normalized x).
// `subgroupBroadcast(v, L)` reads invocation L of the whole subgroup, so this relies on two
// things the kernels keep: every group of 8 in a subgroup loads the same indices (the same
// rows of X, the same keys), and subgroup invocation ids follow local_invocation_id.x in
// 1D workgroups (so invocations 0..7 exist and are the first group).
struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sid: u32,
}

// This invocation's place in its group of 8 (0..8).
fn lane(ids: Ids) -> u32 { return ids.sid & 7u; }

// Invocations that share one load: each takes every LANE_GROUP-th value of a range.
const LANE_GROUP: u32 = 8u;

fn x_own(i: u32) -> vec4<f32> { return x_value(i); }
fn x_from0(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 0u); }
fn x_from1(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 1u); }
fn x_from2(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 2u); }
fn x_from3(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 3u); }
fn x_from4(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 4u); }
fn x_from5(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 5u); }
fn x_from6(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 6u); }
fn x_from7(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 7u); }

// The sum of v over the group's 8 invocations (in lane order, so every invocation gets the
// same bits).
fn lanes_add4(v: vec4<f32>) -> vec4<f32> {
    return subgroupBroadcast(v, 0u) + subgroupBroadcast(v, 1u) + subgroupBroadcast(v, 2u)
        + subgroupBroadcast(v, 3u) + subgroupBroadcast(v, 4u) + subgroupBroadcast(v, 5u)
        + subgroupBroadcast(v, 6u) + subgroupBroadcast(v, 7u);
}
