use super::*;

const BASE: &str = "\"0123456789abcdef0123456789abcdef\"";

fn check(header: &str) -> Option<String> {
    matching_tag([header], BASE)
}

#[test]
fn the_tag_is_the_first_128_bits_of_the_sha256_quoted() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.
    assert_eq!(entity_tag(b"abc"), "\"ba7816bf8f01cfea414140de5dae2223\"");
    assert_eq!(entity_tag(b"abc").len(), 34);
    assert_ne!(entity_tag(b"abc"), entity_tag(b"abd"));
}

#[test]
fn if_none_match_uses_the_weak_comparison() {
    let base = Some(BASE.to_owned());
    assert_eq!(check(BASE), base);
    assert_eq!(check(&format!("W/{BASE}")), base, "a weak tag matches");
    assert_eq!(check("*"), base, "any answer matches *");
    assert_eq!(
        check(&format!("\"other\", W/\"x\" ,{BASE}")),
        base,
        "a list"
    );
    assert_eq!(
        check(&format!("\"a,b\", {BASE}")),
        base,
        "a comma inside a tag"
    );
    assert_eq!(check("\"0123456789abcdef0123456789abcdee\""), None);
    assert_eq!(check("\"other\", W/\"x\""), None);
    assert_eq!(check(""), None);
    assert_eq!(check("0123456789abcdef0123456789abcdef"), None, "unquoted");
    assert_eq!(
        check(&format!("garbage, {BASE}")),
        None,
        "not a list of tags"
    );
    assert_eq!(
        matching_tag(["\"other\"", BASE], BASE),
        base,
        "several field lines"
    );
}

#[test]
fn a_tag_suffixed_with_a_coding_matches_its_base_and_comes_back_as_sent() {
    for coding in ["gzip", "br", "zstd"] {
        let suffixed = format!("\"0123456789abcdef0123456789abcdef-{coding}\"");
        assert_eq!(check(&suffixed), Some(suffixed.clone()));
        assert_eq!(check(&format!("W/{suffixed}")), Some(suffixed.clone()));
    }
    for other in ["-deflate", "-", "-gzipx", "x"] {
        let tag = format!("\"0123456789abcdef0123456789abcdef{other}\"");
        assert_eq!(check(&tag), None, "{tag}");
    }
}

#[test]
fn only_json_documents_are_tagged() {
    let mut headers = HeaderMap::new();
    assert!(!is_json(&headers));
    for (value, json) in [
        ("application/json", true),
        ("application/json; charset=utf-8", true),
        ("application/problem+json", true),
        ("text/event-stream", false),
        ("text/html; charset=utf-8", false),
    ] {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        assert_eq!(is_json(&headers), json, "{value}");
    }
}
