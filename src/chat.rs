//! Chat templates: a model's `chat_template` (Jinja, from `tokenizer_config.json` or
//! `chat_template.jinja`) rendered the way Hugging Face's `apply_chat_template` renders it:
//! `trim_blocks` and `lstrip_blocks`, loop controls, `tojson` without HTML escaping, Python's
//! string methods, `raise_exception` and `strftime_now`, with `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token` in the context.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::tokenizer::token_text;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may know others, e.g. `tool`).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

fn template_error(path: &Path, message: String) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message,
    }
}

impl ChatTemplate {
    /// Compiles `template` (Jinja source) with the model's bos and eos tokens.
    pub fn new(template: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // HF's tojson: json.dumps without ASCII or HTML escaping, optional indent.
        env.add_filter(
            "tojson",
            |v: minijinja::Value,
             indent: Option<usize>|
             -> std::result::Result<String, minijinja::Error> {
                let bad = |e: serde_json::Error| {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
                };
                match indent {
                    None => serde_json::to_string(&v).map_err(bad),
                    Some(n) => {
                        let mut out = Vec::new();
                        let pad = vec![b' '; n];
                        let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
                        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                        v.serialize(&mut ser).map_err(bad)?;
                        Ok(String::from_utf8_lossy(&out).into_owned())
                    }
                }
            },
        );
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<minijinja::Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", template.to_string())
            .map_err(|e| Error::InvalidInput(format!("the chat template does not compile: {e}")))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        })
    }

    /// The template of a model directory: `chat_template.jinja` if present, else
    /// `chat_template` in `tokenizer_config.json` (a string, or a list of named templates of
    /// which `default` is used). `None` when the model has none.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| template_error(&config_path, format!("not valid JSON: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(Error::io(&config_path, e)),
        };
        let jinja_path = dir.join("chat_template.jinja");
        let template = match std::fs::read_to_string(&jinja_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match config.get("chat_template") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Array(named)) => named
                        .iter()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                        .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
                    Some(other) => {
                        return Err(template_error(
                            &config_path,
                            format!("`chat_template` = {other} is not a template"),
                        ))
                    }
                }
            }
            Err(e) => return Err(Error::io(&jinja_path, e)),
        };
        let Some(template) = template else {
            return Ok(None);
        };
        let bos = token_text(config.get("bos_token"));
        let eos = token_text(config.get("eos_token"));
        Self::new(&template, bos.as_deref(), eos.as_deref()).map(Some)
    }

    /// Renders `messages` as the model expects them; `add_generation_prompt` appends the
    /// header of the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`ChatTemplate::render`] with further variables for the template, as HF's
    /// `apply_chat_template(..., **kwargs)` passes them (Qwen3's `enable_thinking`); a
    /// variable not given stays undefined.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::InvalidInput(format!("chat template: {e}")))?;
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => special(&self.bos_token),
            eos_token => special(&self.eos_token),
            ..minijinja::Value::from(minijinja::value::Serde(kwargs))
        };
        tmpl.render(ctx)
            .map_err(|e| Error::InvalidInput(format!("the chat template failed: {e}")))
    }

    /// The end-of-turn token's text, if the tokenizer config names one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
}

/// A special token for the template: its text, or undefined where the tokenizer has none
/// (HF leaves unset tokens out of the context, and Jinja renders undefined as nothing).
fn special(token: &Option<String>) -> minijinja::Value {
    token
        .as_deref()
        .map_or(minijinja::Value::UNDEFINED, minijinja::Value::from)
}

/// `strftime_now(fmt)`: today's date in the few formats chat templates use (`%d %b %Y`,
/// `%Y-%m-%d`, …), in UTC.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
