use super::*;
use axum::http::HeaderValue;

const ALICE: &str = "alice-key-0123456789";

#[test]
fn the_file_holds_hashes_names_and_comments() {
    let text = format!(
        "# the keys\n\n{}  alice # since May\n{}\n",
        hash(ALICE),
        hash("bob").to_ascii_uppercase()
    );
    let keys = parse(Path::new("keys"), &text).expect("valid");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.get(&hash(ALICE)).map(|name| &**name), Some("alice"));
    assert_eq!(keys.get(&hash("bob")).map(|name| &**name), Some(""));
    for bad in [
        "not-a-hash",
        &hash(ALICE)[1..],
        &format!("{}0", hash(ALICE)),
    ] {
        let error = parse(Path::new("keys"), &format!("# ok\n{bad}\n")).expect_err(bad);
        assert!(error.to_string().contains("line 2"), "{error}");
    }
    assert_eq!(
        hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_key_comes_from_bearer_then_the_header_then_the_query() {
    let mut headers = HeaderMap::new();
    assert_eq!(presented(&headers, Some("api_key=q")), Some("q".to_owned()));
    assert_eq!(presented(&headers, Some("api_key=")), None);
    headers.insert(&KEY_HEADER, HeaderValue::from_static("h"));
    assert_eq!(presented(&headers, Some("api_key=q")), Some("h".to_owned()));
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    assert_eq!(presented(&headers, Some("api_key=q")), Some("b".to_owned()));
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic eDp5"),
    );
    assert_eq!(presented(&headers, None), Some("h".to_owned()));
}

#[test]
fn the_key_parameter_is_stripped_for_handlers_and_redacted_for_logs() {
    assert_eq!(strip_query("ticker=AMZN"), "ticker=AMZN");
    assert_eq!(strip_query("api_key=s3cret"), "");
    assert_eq!(
        strip_query("ticker=AMZN&api_key=s3cret&limit=5"),
        "ticker=AMZN&limit=5"
    );
    assert_eq!(strip_query("api%5Fkey=s3cret&since=1"), "since=1");
    assert_eq!(
        redact_query("since=1&api_key=s3cret&api_key=other"),
        "since=1&api_key=REDACTED&api_key=REDACTED"
    );
    assert_eq!(redact_query("api_keys=x"), "api_keys=x");
}

#[test]
fn a_rotated_file_replaces_the_keys_and_a_broken_one_keeps_them() {
    let dir = std::env::temp_dir().join(format!("tickpipe-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keys");
    std::fs::write(&path, format!("{} alice\n", hash(ALICE))).expect("write");
    let store = KeyStore::open(&path).expect("open");
    assert!(store.name(&hash(ALICE)).is_some());
    std::fs::write(&path, format!("{} bob, who replaces alice\n", hash("bob"))).expect("write");
    store.refresh();
    assert!(store.name(&hash(ALICE)).is_none());
    assert_eq!(
        store.name(&hash("bob")).as_deref(),
        Some("bob, who replaces alice")
    );
    std::fs::write(&path, "garbage\n").expect("write");
    store.refresh();
    assert!(
        store.name(&hash("bob")).is_some(),
        "the last good set is kept"
    );
    std::fs::remove_file(&path).expect("remove");
    store.refresh();
    assert!(
        store.name(&hash("bob")).is_some(),
        "also when the file is gone"
    );
    assert!(
        KeyStore::open(&path).is_err(),
        "but a missing file cannot be opened"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
