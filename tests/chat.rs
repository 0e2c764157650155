//! Chat templates rendered by wgpt against Hugging Face's `apply_chat_template` on real
//! templates (Qwen2.5's ChatML, Llama 3 and 3.1, SmolLM2, Qwen3 with `enable_thinking` on and
//! off, Gemma 3, Phi-3.5; `tests/fixtures/chat/`, from `tools/make_chat_fixtures.py`): every
//! case must match byte for byte.

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
        let kwargs = match &case["template_kwargs"] {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let got = t.render_with(&messages, add, &kwargs).unwrap();
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

mod conversation {
    use super::common::{copy_fixture, fixture, TempDir};
    use crate::common::test_gpu;
    use wgpt::{ChatTemplate, Conversation, LoadOptions, Message, Model};
    use wgpt::{SamplerConfig, StopReason};

    fn greedy(g: wgpt::Generation<'_, '_>) -> Vec<u32> {
        g.map(|t| t.unwrap().id).collect()
    }

    /// The Qwen2 fixture (Qwen2.5's template) with a context of 96 instead of 48: its tiny
    /// tokenizer spells "assistant" in 7 tokens, and rotary positions need no trained table,
    /// so the longer context is the same model.
    fn qwen2_with_context_96() -> TempDir {
        let dir = copy_fixture("tiny-qwen2-bf16");
        let path = dir.path().join("config.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "\"max_position_embeddings\": 48",
            "\"max_position_embeddings\": 96",
        );
        assert!(text.contains("96"));
        std::fs::write(&path, text).unwrap();
        dir
    }

    #[test]
    fn turns_prefill_only_what_is_new_and_match_a_recompute() {
        let Some(gpu) = test_gpu() else { return };
        let dir = qwen2_with_context_96();
        let model = Model::load(dir.path(), &gpu, &LoadOptions::default()).unwrap();
        let tok = model.tokenizer().unwrap();
        let template = ChatTemplate::from_dir(&fixture("tiny-qwen2-bf16"))
            .unwrap()
            .unwrap();
        let mut chat = Conversation::new(&model, Some("S")).unwrap();
        let first = greedy(chat.send("Hi", SamplerConfig::greedy(), 4).unwrap());
        assert_eq!(first.len(), 4);
        // Turn 1 equals plain generation from the rendered prompt.
        let system = Message::new("system", "S");
        let prompt1 = template
            .render(&[system.clone(), Message::new("user", "Hi")], true)
            .unwrap();
        let mut s = model.session().unwrap();
        let ids1 = tok.encode(&prompt1).unwrap();
        assert_eq!(
            greedy(s.generate_ids(&ids1, SamplerConfig::greedy(), 4).unwrap()),
            first
        );
        // Turn 2 prefills the end of the reply as the template writes it and the new message.
        let second = greedy(chat.send("Ok", SamplerConfig::greedy(), 2).unwrap());
        assert_eq!(chat.messages().len(), 4, "{:?}", chat.messages());
        let reply1 = tok.decode(&first).unwrap();
        assert_eq!(
            chat.messages()[2],
            Message::new("assistant", reply1.clone())
        );
        let full = template.render(chat.messages(), true).unwrap();
        let rest = full.strip_prefix(&format!("{prompt1}{reply1}")).unwrap();
        let rest_ids = tok.encode(rest).unwrap();
        assert_eq!(chat.last_prefill_tokens(), rest_ids.len());
        assert!(rest_ids.len() < tok.encode(&full).unwrap().len() / 2);
        // … and gives what recomputing those same tokens from scratch gives.
        let cached: Vec<u32> = [&ids1[..], &first[..], &rest_ids[..]].concat();
        s.reset();
        assert_eq!(
            greedy(s.generate_ids(&cached, SamplerConfig::greedy(), 2).unwrap()),
            second
        );
        // /reset keeps the system message.
        chat.reset();
        assert_eq!(chat.messages(), [system]);
        assert!(chat.tokens().is_empty());
    }

    #[test]
    fn a_full_context_drops_the_oldest_turns() {
        let Some(gpu) = test_gpu() else { return };
        // 48 positions: a few turns of a dozen tokens fill it.
        let model = Model::load(fixture("tiny-qwen2-bf16"), &gpu, &LoadOptions::default()).unwrap();
        let mut chat = Conversation::new(&model, Some("S")).unwrap();
        let mut most = 0;
        let mut dropped = 0;
        for i in 0..6 {
            // `prepare` says, before the reply, how many turns made room for this one.
            let before = chat.messages().len();
            let n = chat.prepare(&format!("turn {i}")).unwrap();
            let reply = usize::from(i > 0); // the last reply joins the messages
            assert_eq!(
                chat.messages().len(),
                before + reply + 1 - 2 * n,
                "turn {i}"
            );
            dropped += n;
            let mut g = chat.reply(SamplerConfig::greedy(), 4).unwrap();
            g.by_ref().for_each(|t| {
                t.unwrap();
            });
            assert_ne!(g.stop_reason(), Some(StopReason::Error));
            drop(g);
            most = most.max(chat.messages().len());
            assert!(chat.tokens().len() <= 48);
            assert_eq!(chat.messages()[0], Message::new("system", "S"));
            // Turns are dropped whole: the first after the system message is a user's.
            assert_eq!(chat.messages()[1].role, "user");
        }
        // Turns were dropped: fewer messages than 1 + 2·6 - 1 remain.
        assert!(dropped > 0);
        assert!(chat.messages().len() < 12, "{:?}", chat.messages());
        // A reply needs a prepared turn.
        assert!(chat.reply(SamplerConfig::greedy(), 1).is_err());
        assert!(most < 12);
        // One message longer than the context is an error, and the conversation goes on.
        let long = "word ".repeat(60);
        let e = chat.send(&long, SamplerConfig::greedy(), 4).err().unwrap();
        assert!(e.to_string().contains("the context holds 48"), "{e}");
        assert!(chat.send("ok", SamplerConfig::greedy(), 2).is_ok());
    }

    #[test]
    fn a_model_without_template_cannot_chat() {
        let Some(gpu) = test_gpu() else { return };
        let model = Model::load(fixture("tiny-hf-f16"), &gpu, &LoadOptions::default()).unwrap();
        let e = Conversation::new(&model, None).err().unwrap();
        assert!(e.to_string().contains("no chat template"), "{e}");
    }
}

/// Qwen3's `enable_thinking = false` (`--template-arg`, `chat_template_kwargs`) reaches the
/// template through a conversation: the prompt ends with the empty think block HF's
/// `apply_chat_template(..., enable_thinking=False)` writes, and without it does not.
#[test]
fn template_kwargs_reach_a_conversations_template() {
    use wgpt::{Conversation, LoadOptions, Model};
    let Some(gpu) = common::test_gpu() else {
        return;
    };
    let model = Model::load(fixture("tiny-qwen3-bf16"), &gpu, &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let think = tok.encode("<think>\n\n</think>\n\n").unwrap();
    for (kwargs, empty_block) in [
        (serde_json::json!({"enable_thinking": false}), true),
        (serde_json::json!({}), false),
    ] {
        let mut chat = Conversation::new(&model, None).unwrap();
        chat.set_template_kwargs(kwargs.as_object().unwrap().clone());
        // The prompt's tokens are in the cache once the reply has started.
        for t in chat.send("Hi", wgpt::SamplerConfig::greedy(), 1).unwrap() {
            t.unwrap();
        }
        let ids = &chat.tokens()[..chat.last_prefill_tokens()];
        assert_eq!(ids.ends_with(&think), empty_block, "{kwargs}: {ids:?}");
    }
}
