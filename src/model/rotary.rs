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

/// The rope object of a config and its key: `rope_parameters` (transformers 5) or
/// `rope_scaling` (older configs), if either is there.
pub(crate) fn rope_object(f: &Fields) -> Result<Option<(&'static str, Fields)>> {
    Ok(
        match (f.object("rope_parameters")?, f.object("rope_scaling")?) {
            (Some(p), _) => Some(("rope_parameters", p)),
            (None, Some(s)) => Some(("rope_scaling", s)),
            (None, None) => None,
        },
    )
}

/// The rule a rope object names: `rope_type`, or older configs' `type` (`None`: default).
pub(crate) fn rope_kind(obj: &Fields) -> Result<Option<&str>> {
    match obj.string("rope_type")? {
        Some(k) => Ok(Some(k)),
        None => obj.string("type"),
    }
}

/// The rotary base: `rope_theta` at the top level, else inside transformers 5's
/// `rope_parameters`, else `default`.
pub(crate) fn rope_theta(f: &Fields, default: f64) -> Result<f64> {
    if let Some(t) = f.number("rope_theta")? {
        return Ok(t);
    }
    Ok(match f.object("rope_parameters")? {
        Some(p) => p.number("rope_theta")?.unwrap_or(default),
        None => default,
    })
}

/// `rope_parameters` (transformers 5) or `rope_scaling` (older configs) as a [`RopeScaling`].
pub(crate) fn rope_scaling(f: &Fields) -> Result<RopeScaling> {
    match rope_object(f)? {
        Some((key, obj)) => scaling_of(key, &obj),
        None => Ok(RopeScaling::None),
    }
}

/// The frequency rule of one rope object (`rope_parameters`, `rope_scaling`, or one layer
/// type's entry of `rope_parameters`) named `key` in errors.
pub(crate) fn scaling_of(key: &str, obj: &Fields) -> Result<RopeScaling> {
    let kind = rope_kind(obj)?;
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
