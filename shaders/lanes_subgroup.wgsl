// Sharing loaded X values between the 8 invocations of a lane group, with subgroup operations
// (used where the adapter has them, with subgroups of at least 8). Each invocation loads the
// vec4 of X at its own index (`x_own`), and `x_from{L}(own, i)` returns the value invocation L
// loaded (its index was i). One load per invocation instead of eight: on lavapipe a load costs
// a loop over the SIMD lanes, a broadcast is one register shuffle. The alternative without
// subgroups is lanes_plain.wgsl, with the same functions. Needs the kernel's `X`.
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

fn x_own(i: u32) -> vec4<f32> { return X[i]; }
fn x_from0(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 0u); }
fn x_from1(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 1u); }
fn x_from2(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 2u); }
fn x_from3(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 3u); }
fn x_from4(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 4u); }
fn x_from5(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 5u); }
fn x_from6(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 6u); }
fn x_from7(own: vec4<f32>, i: u32) -> vec4<f32> { return subgroupBroadcast(own, 7u); }
