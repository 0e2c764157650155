//! Attention over the KV cache (one sequence, a batch of sequences; f32 and f16 caches).

use super::*;

#[test]
fn attention_with_cache_matches_reference() {
    for h in Harness::variants() {
        attention_with_cache_matches_reference_on(&h);
    }
}

/// The f16 cache (`kv_f16.wgsl`): the same shapes against the reference on keys and values
/// rounded to f16 as the cache keeps them (the stored ones, and the batch's own, which a
/// single-token step reads from q|k|v rounded alike), at the same tolerance; the cache read
/// back holds those halves.
#[test]
fn attention_with_an_f16_cache_matches_reference_on_rounded_keys() {
    for h in Harness::variants_kv(KvDtype::F16) {
        attention_with_cache_matches_reference_on(&h);
    }
}

/// Rounds to f16 where the harness's cache is f16.
fn as_cached(h: &Harness, v: &mut [f32]) {
    if h.k.kv == KvDtype::F16 {
        for x in v {
            *x = half::f16::from_f32(*x).to_f32();
        }
    }
}

/// The cache's bytes for `values`, in the harness's format.
fn cache_buffer(h: &Harness, values: &[f32]) -> wgpu::Buffer {
    match h.k.kv {
        KvDtype::F16 => {
            let halves: Vec<u16> = values
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            h.buf_bytes(bytemuck::cast_slice(&halves))
        }
        _ => h.buf(values),
    }
}

/// Reads `n` cached values back as f32.
fn read_cache(h: &Harness, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let none = Step {
        n_tokens: 0,
        pos: 0,
        row0: 0,
        n_rows: 0,
    };
    match h.k.kv {
        KvDtype::F16 => {
            let words = h.run(&[], none, buf, n / 2);
            let halves: &[u16] = bytemuck::cast_slice(&words);
            halves
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect()
        }
        _ => h.run(&[], none, buf, n),
    }
}

fn attention_with_cache_matches_reference_on(h: &Harness) {
    let mut rng = Rng::new(5);
    // (T, pos, n_head, n_kv_head, head_dim): multi-head, then grouped-query attention with
    // odd head counts and a single key/value head.
    for (t, pos, n_head, n_kv, hd) in [
        (1, 0, 1, 1, 4),
        (7, 5, 3, 3, 8),
        (1, 64, 12, 12, 64),
        (65, 0, 5, 5, 12),
        (3, 1, 2, 2, 256),
        (13, 4, 2, 2, 32),
        // Over 1024 keys: the cooperative kernel's online softmax across key chunks.
        (1, 1100, 2, 2, 8),
        (3, 1030, 1, 1, 4),
        // Grouped-query: 3 query heads per kv head, 1 kv head (multi-query), 7 per kv head.
        (5, 3, 9, 3, 16),
        (1, 20, 6, 2, 64),
        (9, 0, 5, 1, 12),
        (1, 1030, 14, 2, 64),
    ] {
        let heads = Heads {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        let (c, ckv, row) = (heads.q_c(), heads.kv_c(), heads.qkv_c());
        let n_pos = pos + t;
        let qkv = random(&mut rng, t * row, 2.0);
        // Earlier positions already in the cache.
        let mut kc = random(&mut rng, n_pos * ckv, 2.0);
        let mut vc = random(&mut rng, n_pos * ckv, 2.0);
        as_cached(h, &mut kc);
        as_cached(h, &mut vc);
        let kv = [kc.as_slice(), vc.as_slice()].concat();
        let (qb, kvb, ob) = (h.buf(&qkv), cache_buffer(h, &kv), h.buf(&vec![0f32; t * c]));
        let scale = 1.0 / (hd as f32).sqrt();
        // Single-token steps leave the store to attention (kv_store launches nothing).
        let store = kv_store(&h.gpu, &h.k, &h.step, heads, n_pos, &qb, &kvb);
        // The kernel the forward pass launches: single-token steps take the decode kernel
        // where the family has one (`Kernels::attention_decode`).
        let (s, k) = (&h.step, &h.k);
        let how = plain(scale, n_pos);
        let att = match attention_rows(&h.gpu, k, s, heads, how, &qb, &kvb, &ob) {
            Some(d) if t == 1 && k.attention_decode() => d,
            _ => attention(&h.gpu, k, s, heads, how, &qb, &kvb, &ob),
        };
        let step = Step {
            n_tokens: t as u32,
            pos: pos as u32,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&store, &att], step, &ob, t * c);
        let mut q = vec![0f32; t * c];
        for i in 0..t {
            let r = &qkv[i * row..(i + 1) * row];
            q[i * c..(i + 1) * c].copy_from_slice(&r[..c]);
            kc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c..c + ckv]);
            vc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c + ckv..]);
        }
        as_cached(h, &mut kc);
        as_cached(h, &mut vc);
        let want = reference::attention(&q, &kc, &vc, t, pos, n_head, n_kv, hd, scale);
        let what = format!(
            "attention T={t} pos={pos} heads={n_head}/{n_kv} hd={hd} {:?} KV {}",
            h.opts, h.k.kv
        );
        assert_close(&got, &want, &what);
        // The cache now holds the batch's keys and values.
        let kgot = read_cache(h, &kvb, 2 * n_pos * ckv);
        assert_close(&kgot, &[kc, vc].concat(), &format!("kv cache: {what}"));
    }
}

#[test]
fn batch_of_sequences_stores_and_attends_per_row() {
    for h in Harness::variants() {
        batch_of_sequences_stores_and_attends_per_row_on(&h);
    }
}

/// A batched decode step: each row is one token of its own sequence, at its own position and
/// KV-cache slot (`RowMap`); its key and value are stored there (by attention_decode.wgsl itself
/// where the family runs it, as the forward pass launches no kv_store then; else by kv_store)
/// and attention reads that slot only.
fn batch_of_sequences_stores_and_attends_per_row_on(h: &Harness) {
    use crate::kernels::RowMap;
    let mut rng = Rng::new(21);
    let (slots, n_pos) = (3, 20);
    // (n_head, n_kv_head, head_dim), rows as (position, slot); a single row is stored by
    // attention itself in either family (kv_store launches nothing for it).
    let batches: [&[(usize, usize)]; 2] = [&[(5, 0), (0, 2), (19, 1)], &[(11, 2)]];
    for ((n_head, n_kv, hd), rows) in [(6, 2, 16), (12, 12, 64), (3, 3, 36)]
        .into_iter()
        .flat_map(|h| batches.map(|b| (h, b)))
    {
        let heads = Heads {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        let (c, ckv, row) = (heads.q_c(), heads.kv_c(), heads.qkv_c());
        let t = rows.len();
        let qkv = random(&mut rng, t * row, 2.0);
        let mut kv = random(&mut rng, slots * 2 * n_pos * ckv, 2.0);
        let (qb, kvb, ob) = (h.buf(&qkv), h.buf(&kv), h.buf(&vec![0f32; t * c]));
        let scale = 1.0 / (hd as f32).sqrt();
        let store = kv_store(&h.gpu, &h.k, &h.step, heads, n_pos, &qb, &kvb);
        let (s, k) = (&h.step, &h.k);
        let how = plain(scale, n_pos);
        let att = match attention_rows(&h.gpu, k, s, heads, how, &qb, &kvb, &ob) {
            Some(d) => d,
            None => attention(&h.gpu, k, s, heads, how, &qb, &kvb, &ob),
        };
        let mut map: RowMap = bytemuck::Zeroable::zeroed();
        map.per_row = 1;
        for (i, &(p, s)) in rows.iter().enumerate() {
            map.rows[i] = [p as u32, s as u32, 0, 0];
        }
        h.gpu
            .queue
            .write_buffer(&h.step, 16, bytemuck::bytes_of(&map));
        let step = Step {
            n_tokens: t as u32,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let launches: &[&Dispatch] = match h.k.attention_decode() {
            true => &[&att],
            false => &[&store, &att],
        };
        let got = h.run(launches, step, &ob, t * c);
        let mut want = Vec::new();
        for (i, &(p, s)) in rows.iter().enumerate() {
            let r = &qkv[i * row..(i + 1) * row];
            let keys = s * 2 * n_pos * ckv;
            let values = keys + n_pos * ckv;
            kv[keys + p * ckv..keys + (p + 1) * ckv].copy_from_slice(&r[c..c + ckv]);
            kv[values + p * ckv..values + (p + 1) * ckv].copy_from_slice(&r[c + ckv..]);
            let (kc, vc) = (
                &kv[keys..keys + (p + 1) * ckv],
                &kv[values..values + (p + 1) * ckv],
            );
            let q = &r[..c];
            want.extend(reference::attention(
                q, kc, vc, 1, p, n_head, n_kv, hd, scale,
            ));
        }
        let what = format!(
            "per-row attention rows={} heads={n_head}/{n_kv} hd={hd} {:?}",
            rows.len(),
            h.opts
        );
        assert_close(&got, &want, &what);
        // The cache holds each row's key and value in its slot, the rest untouched.
        let none = Step {
            n_tokens: 0,
            pos: 0,
            row0: 0,
            n_rows: 0,
        };
        let cache = h.run(&[], none, &kvb, kv.len());
        assert_close(&cache, &kv, &format!("{what}: cache"));
        map.per_row = 0;
        h.gpu
            .queue
            .write_buffer(&h.step, 16, bytemuck::bytes_of(&map));
    }
}

/// Plain causal attention over a cache of `rows` positions.
fn plain(scale: f32, rows: usize) -> Attend {
    Attend {
        scale,
        softcap: None,
        window: None,
        rows,
    }
}

#[test]
fn sliding_windows_soft_caps_and_ring_caches_match_reference() {
    for h in Harness::variants() {
        sliding_windows_soft_caps_and_ring_caches_match_reference_on(&h);
    }
}

/// A sliding-window layer (Gemma's local layers, Mistral): each query sees its last `window`
/// positions, scores soft-capped (Gemma 2), the cache a ring of `rows` ≥ window + T − 1
/// positions (position p in row p % rows), or the whole history. Prefill batches that cross
/// the ring's end and decode steps long after it, in every attention kernel.
fn sliding_windows_soft_caps_and_ring_caches_match_reference_on(h: &Harness) {
    let mut rng = Rng::new(77);
    // (T, pos, n_head, n_kv_head, head_dim, window, ring rows or None: whole history, softcap)
    for (t, pos, n_head, n_kv, hd, window, ring, cap) in [
        (13, 0, 4, 1, 32, 8, Some(20), None),
        (1, 40, 4, 2, 16, 8, Some(8), Some(5.0)),
        (5, 17, 3, 3, 8, 6, Some(10), Some(2.0)),
        (9, 3, 2, 1, 64, 4, None, Some(1.0)),
        (1, 1100, 2, 2, 8, 1040, None, None),
        (3, 2000, 2, 1, 8, 1030, Some(1032), Some(3.0)),
    ] {
        let heads = Heads {
            n_head,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        let (c, ckv, row) = (heads.q_c(), heads.kv_c(), heads.qkv_c());
        let n_pos = pos + t;
        let rows = ring.unwrap_or(n_pos);
        assert!(rows >= window + t - 1 || rows == n_pos);
        let qkv = random(&mut rng, t * row, 2.0);
        // Every position's key and value so far; the cache holds the last `rows` of them.
        let mut kc = random(&mut rng, n_pos * ckv, 2.0);
        let mut vc = random(&mut rng, n_pos * ckv, 2.0);
        for i in 0..t {
            let r = &qkv[i * row..(i + 1) * row];
            kc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c..c + ckv]);
            vc[(pos + i) * ckv..(pos + i + 1) * ckv].copy_from_slice(&r[c + ckv..]);
        }
        let mut cache = vec![0f32; 2 * rows * ckv];
        for p in pos.saturating_sub(rows)..pos {
            let at = (p % rows) * ckv;
            cache[at..at + ckv].copy_from_slice(&kc[p * ckv..(p + 1) * ckv]);
            let at = at + rows * ckv;
            cache[at..at + ckv].copy_from_slice(&vc[p * ckv..(p + 1) * ckv]);
        }
        let (qb, kvb, ob) = (h.buf(&qkv), h.buf(&cache), h.buf(&vec![0f32; t * c]));
        let scale = 1.0 / (hd as f32).sqrt();
        let how = Attend {
            scale,
            softcap: cap,
            window: Some(window),
            rows,
        };
        let store = kv_store(&h.gpu, &h.k, &h.step, heads, rows, &qb, &kvb);
        let (s, k) = (&h.step, &h.k);
        let att = match attention_rows(&h.gpu, k, s, heads, how, &qb, &kvb, &ob) {
            Some(d) if t == 1 && k.attention_decode() => d,
            _ => attention(&h.gpu, k, s, heads, how, &qb, &kvb, &ob),
        };
        let step = Step {
            n_tokens: t as u32,
            pos: pos as u32,
            row0: 0,
            n_rows: 0,
        };
        let got = h.run(&[&store, &att], step, &ob, t * c);
        let q: Vec<f32> = (0..t)
            .flat_map(|i| qkv[i * row..i * row + c].to_vec())
            .collect();
        let want = reference::attention_windowed(
            &q,
            &kc,
            &vc,
            (t, pos),
            (n_head, n_kv, hd),
            scale,
            Some(window),
            cap,
        );
        let what = format!(
            "windowed attention T={t} pos={pos} heads={n_head}/{n_kv} hd={hd} window={window} rows={rows} cap={cap:?} {:?}",
            h.opts
        );
        assert_close(&got, &want, &what);
    }
}
