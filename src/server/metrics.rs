//! `GET /metrics`: what the server counts, in Prometheus' text format — requests by endpoint
//! and status, prompt / generated / cached tokens, time to first token and time per output
//! token (histograms), running and queued sequences, KV-cache slots in use.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::scheduler::{Counters, Observer};

/// A histogram with fixed upper bounds (seconds).
struct Histogram {
    bounds: &'static [f64],
    /// Per bound, observations ≤ it (not cumulative; summed when written).
    counts: Vec<AtomicU64>,
    /// Observations above every bound.
    over: AtomicU64,
    sum: Mutex<f64>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            over: AtomicU64::new(0),
            sum: Mutex::new(0.0),
        }
    }

    fn observe(&self, v: f64) {
        match self.bounds.iter().position(|&b| v <= b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        if let Ok(mut s) = self.sum.lock() {
            *s += v;
        }
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            total += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {total}");
        }
        total += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum.lock().map_or(0.0, |s| *s);
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// The server's counters (shared by the HTTP side and the GPU thread).
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    ttft: Histogram,
    per_token: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        const TTFT: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        const TPOT: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT),
            per_token: Histogram::new(TPOT),
        }
    }
}

impl Metrics {
    /// Counts a request answered on `path` with `status`.
    pub fn request(&self, path: &str, status: u16) {
        // Unknown paths are one label, so that probes cannot grow the table.
        let known = [
            "/v1/completions",
            "/v1/chat/completions",
            "/v1/models",
            "/health",
            "/metrics",
        ];
        let path = known
            .iter()
            .find(|&&k| k == path)
            .copied()
            .unwrap_or("other");
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((path.to_string(), status)).or_insert(0) += 1;
        }
    }

    /// The Prometheus text.
    pub fn render(&self, c: &Counters, slots: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP wgpt_requests_total HTTP requests by endpoint and status.\n# TYPE wgpt_requests_total counter"
        );
        if let Ok(r) = self.requests.lock() {
            for ((path, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "wgpt_requests_total{{endpoint=\"{path}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "wgpt_prompt_tokens_total",
                "Prompt tokens of admitted sequences.",
                &self.prompt_tokens,
            ),
            (
                "wgpt_cached_prompt_tokens_total",
                "Prompt tokens served by the prefix cache.",
                &self.cached_tokens,
            ),
            (
                "wgpt_generation_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
        ];
        for (name, help, v) in counters {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let running = c.running.load(Ordering::SeqCst);
        let gauges = [
            (
                "wgpt_sequences_running",
                "Sequences in KV-cache slots.",
                running,
            ),
            (
                "wgpt_requests_queued",
                "Requests waiting for a slot.",
                c.queued.load(Ordering::SeqCst),
            ),
            ("wgpt_kv_slots_used", "KV-cache slots in use.", running),
            ("wgpt_kv_slots", "KV-cache slots.", slots),
            (
                "wgpt_requests_cancelled",
                "Requests whose client went away.",
                c.cancelled.load(Ordering::SeqCst),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.ttft.write(
            &mut out,
            "wgpt_time_to_first_token_seconds",
            "From a request's arrival to its first token.",
        );
        self.per_token.write(
            &mut out,
            "wgpt_time_per_output_token_seconds",
            "Between two tokens of a sequence.",
        );
        out
    }
}

impl Observer for Metrics {
    fn first_token(&self, ttft: f64, prompt_tokens: usize, cached_tokens: usize) {
        self.ttft.observe(ttft);
        self.prompt_tokens
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        self.cached_tokens
            .fetch_add(cached_tokens as u64, Ordering::Relaxed);
    }

    fn next_token(&self, gap: f64) {
        self.per_token.observe(gap);
    }

    fn finished(&self, completion_tokens: usize) {
        self.generated_tokens
            .fetch_add(completion_tokens as u64, Ordering::Relaxed);
    }
}
