//! The GPT-2 BPE tokenizer through HF `tokenizers`.

mod common;

use wgpt::Tokenizer;

#[test]
fn gpt2_known_ids_and_round_trip() {
    let tok = Tokenizer::from_file(&common::fixture("gpt2-tokenizer/tokenizer.json")).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(50256));
    let text =
        "ROMEO: But soft, what light through yonder window breaks? — naïve café 日本語 🤖\n\tend";
    let ids = tok.encode(text).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), text);
    // Byte lengths of the tokens add up to the text's UTF-8 length.
    let bytes: usize = ids.iter().map(|&i| tok.token_bytes(i)).sum();
    assert_eq!(bytes, text.len());
}

#[test]
fn streaming_decode_holds_back_partial_characters() {
    let tok = Tokenizer::from_file(&common::fixture("gpt2-tokenizer/tokenizer.json")).unwrap();
    let text = "日本語 🤖 ok";
    let ids = tok.encode(text).unwrap();
    let mut d = wgpt::StreamDecoder::new();
    let mut out = String::new();
    for &i in &ids {
        let piece = d.push(&tok, i).unwrap();
        assert!(!piece.contains('\u{FFFD}'));
        out.push_str(&piece);
    }
    assert_eq!(out, text);
}

#[test]
fn sentencepiece_streaming_and_byte_lengths() {
    // The SentencePiece tokenizer of `tests/fixtures/tiny-sp-llama-f32`: pieces with `▁` for a
    // space, `<0xNN>` byte fallback for characters without a piece (emoji, most CJK).
    let tok = Tokenizer::from_dir(&common::fixture("tiny-sp-llama-f32")).unwrap();
    let text = "ROMEO: But soft, naïve café 日本語 🤖 ok\n\nend";
    let ids = tok.encode(text).unwrap();
    assert!(ids.iter().any(|&i| tok.token_bytes(i) == 1));
    let mut d = wgpt::StreamDecoder::new();
    let mut out = String::new();
    for &i in &ids {
        let piece = d.push(&tok, i).unwrap();
        assert!(!piece.contains('\u{FFFD}'));
        out.push_str(&piece);
    }
    assert_eq!(out, text);
    // Bytes: the text's, plus the space of the `▁` prefix the first piece carries.
    let bytes: usize = ids.iter().map(|&i| tok.token_bytes(i)).sum();
    assert_eq!(bytes, text.len() + 1);
    // Byte tokens that form no valid UTF-8 with their neighbours (a random model emits such
    // runs) change how earlier tokens decode; the stream goes on instead of failing.
    let byte = |b: u8| tok.token_to_id(&format!("<0x{b:02X}>")).unwrap();
    let word = tok.encode("end").unwrap();
    let mut d = wgpt::StreamDecoder::new();
    let mut out = String::new();
    for &i in [byte(0x1C), byte(0xC3)].iter().chain(&word) {
        out.push_str(&d.push(&tok, i).unwrap());
    }
    assert!(out.starts_with('\u{1c}') && out.ends_with("end"), "{out:?}");
}
