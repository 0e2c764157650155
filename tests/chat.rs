//! Chat templates rendered by wgpt against Hugging Face's `apply_chat_template` on real
//! templates (Qwen2.5's ChatML, Llama 3 and 3.1, SmolLM2; `tests/fixtures/chat/`, from
//! `tools/make_chat_fixtures.py`): every case must match byte for byte.

mod common;

use common::fixture;
use wgpt::{ChatTemplate, Message};

#[test]
fn templates_render_as_hf_apply_chat_template() {
    let dir = fixture("chat");
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut templates = std::collections::BTreeSet::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let template = case["template"].as_str().unwrap();
        templates.insert(template.to_string());
        let source = std::fs::read_to_string(dir.join(format!("{template}.jinja"))).unwrap();
        let t = ChatTemplate::new(
            &source,
            case["bos_token"].as_str(),
            case["eos_token"].as_str(),
        )
        .unwrap();
        let messages: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let got = t.render(&messages, add).unwrap();
        assert_eq!(got, case["rendered"].as_str().unwrap(), "{name}");
    }
    assert!(templates.len() >= 3, "{templates:?}");
}

#[test]
fn a_model_directory_gives_its_template_or_none() {
    // tiny-qwen2-bf16 carries Qwen2.5's template in tokenizer_config.json.
    let t = ChatTemplate::from_dir(&fixture("tiny-qwen2-bf16"))
        .unwrap()
        .expect("template");
    let got = t.render(&[Message::new("user", "Hi")], true).unwrap();
    assert!(
        got.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{got}"
    );
    assert_eq!(t.eos_token(), Some("<|endoftext|>"));
    // GPT-2 fixtures have none.
    assert!(ChatTemplate::from_dir(&fixture("tiny-hf-f16"))
        .unwrap()
        .is_none());
}

#[test]
fn template_errors_are_clear() {
    let e = ChatTemplate::new("{% for m in messages %}", None, None).unwrap_err();
    assert!(e.to_string().contains("does not compile"), "{e}");
    let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", None, None).unwrap();
    let e = t.render(&[Message::new("user", "x")], true).unwrap_err();
    assert!(e.to_string().contains("roles must alternate"), "{e}");
}
