// lanes_subgroup.wgsl for adapters without subgroup operations: the same functions, but every
// invocation loads every value itself (`x_own` loads nothing). Needs the kernel's `x_value`.
struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
}

// This invocation's place in its group of 8 (0..8).
fn lane(ids: Ids) -> u32 { return ids.lid.x & 7u; }

// Every invocation takes every value of a range itself.
const LANE_GROUP: u32 = 1u;

fn x_own(i: u32) -> vec4<f32> { return vec4<f32>(0.0); }
fn x_from0(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from1(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from2(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from3(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from4(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from5(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from6(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }
fn x_from7(own: vec4<f32>, i: u32) -> vec4<f32> { return x_value(i); }

// The sum over the group: each invocation already has all of it.
fn lanes_add4(v: vec4<f32>) -> vec4<f32> { return v; }
