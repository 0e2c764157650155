//! Rotary frequencies: the scaling rules of `rope_scaling` / `rope_parameters` (linear,
//! llama3, per-pair factors) as HF computes them, shared by the families with rotary positions.

use crate::config::{Fields, RopeScaling};
use crate::error::{Error, Result};

/// Rotary frequencies of a head of `dims` dimensions, theta^(−2j/dims), rescaled as
/// `scaling` says (HF's `_compute_linear_scaling` / `_compute_llama3_parameters`).
pub(crate) fn inv_freq(dims: usize, theta: f64, scaling: &RopeScaling) -> Vec<f64> {
    (0..dims / 2)
        .map(|j| (j, theta.powf(-((2 * j) as f64) / dims as f64)))
        .map(|(j, f)| match *scaling {
            RopeScaling::Linear { factor } => f / factor,
            // `validate` checked one factor per pair.
            RopeScaling::Factors(ref factors) => f / factors.get(j).copied().unwrap_or(1.0),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < orig / high {
                    f
                } else if wavelen > orig / low {
                    f / factor
                } else {
                    let smooth = (orig / wavelen - low) / (high - low);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            }
            _ => f,
        })
        .collect()
}

/// `rope_parameters` (transformers 5) or `rope_scaling` (older configs) as a [`RopeScaling`].
pub(crate) fn rope_scaling(f: &Fields) -> Result<RopeScaling> {
    let (key, obj) = match (f.object("rope_parameters")?, f.object("rope_scaling")?) {
        (Some(p), _) => ("rope_parameters", p),
        (None, Some(s)) => ("rope_scaling", s),
        (None, None) => return Ok(RopeScaling::None),
    };
    scaling_of(key, &obj)
}

/// The frequency rule of one rope object (`rope_parameters`, `rope_scaling`, or one layer
/// type's entry of `rope_parameters`) named `key` in errors.
pub(crate) fn scaling_of(key: &str, obj: &Fields) -> Result<RopeScaling> {
    let kind = match obj.string("rope_type")? {
        Some(k) => Some(k),
        None => obj.string("type")?,
    };
    let number = |name: &str| -> Result<f64> {
        obj.number(name)?.ok_or_else(|| Error::Config {
            path: "config.json".into(),
            message: format!("`{key}.{name}` is missing"),
        })
    };
    match kind.unwrap_or("default") {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        }),
        other => Err(Error::Unsupported(format!(
            "`{key}.rope_type` = \"{other}\" in config.json; supported: default, linear, llama3"
        ))),
    }
}
