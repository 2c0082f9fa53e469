//! The pieces `psy synth` stands on: the append-only store survives a kill at any byte (the
//! torn tail is dropped and the work redone, with no duplicate and no lost line), and the post
//! readers report every record they skip with its file:line, counted by reason (JSONL and
//! Dreaddit's CSV layout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use psy::synth::{read_posts, Store};
use psy_core::synth_spec::InputSection;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn record(i: usize) -> Value {
    json!({"post_id": format!("p{i}"), "text": "é".repeat(i % 7), "n": i})
}

/// Writes `n` records through a store, as a run would.
fn full_file(dir: &Path, n: usize) -> Vec<u8> {
    let path = dir.join("full.jsonl");
    let mut store = Store::open(&path).unwrap();
    for i in 0..n {
        assert!(store.append(&format!("p{i}"), record(i)).unwrap());
    }
    std::fs::read(&path).unwrap()
}

/// Opens the store on `bytes` (a file cut by a kill) and finishes the job like `--resume`.
fn resume_from(dir: &Path, bytes: &[u8], n: usize) -> Vec<u8> {
    let path = dir.join("cut.jsonl");
    std::fs::write(&path, bytes).unwrap();
    let mut store = Store::open(&path).unwrap();
    for i in 0..n {
        store.append(&format!("p{i}"), record(i)).unwrap();
    }
    drop(store);
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A kill at any byte, then a resume: the file is exactly what an uninterrupted run
    /// writes (so no record is lost or duplicated), whatever the cut.
    #[test]
    fn a_kill_at_any_byte_then_resume_gives_the_uninterrupted_file(cut in 0usize..10_000, n in 1usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let full = full_file(dir.path(), n);
        let cut = cut % (full.len() + 1);
        let resumed = resume_from(dir.path(), &full[..cut], n);
        prop_assert_eq!(resumed, full);
    }
}

#[test]
fn a_torn_last_line_is_dropped_and_reported_a_damaged_earlier_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    std::fs::write(
        &path,
        "{\"key\":\"a\"}\n{\"key\":\"b\"}\n{\"key\":\"c\",\"x\":",
    )
    .unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.repaired_bytes, "{\"key\":\"c\",\"x\":".len());
    drop(store);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"key\":\"a\"}\n{\"key\":\"b\"}\n"
    );
    // A complete last line that does not parse is torn too (its middle was lost).
    std::fs::write(&path, "{\"key\":\"a\"}\n{\"key\":\n").unwrap();
    assert_eq!(Store::open(&path).unwrap().len(), 1);
    // Damage before the last line is never skipped silently.
    std::fs::write(&path, "{\"key\":\"a\"}\nnot json\n{\"key\":\"b\"}\n").unwrap();
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(e.contains("s.jsonl:2:") && e.contains("not JSON"), "{e}");
}

fn input(id: &str, text: &str, extra: &[&str]) -> InputSection {
    InputSection {
        id_column: id.into(),
        text_column: text.into(),
        extra_columns: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn jsonl_posts_with_no_text_unknown_columns_bad_utf8_or_duplicate_ids_are_skipped_with_their_line()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posts.jsonl");
    let mut data = Vec::new();
    data.extend_from_slice(
        b"{\"id\": \"a\", \"text\": \"I can't sleep\", \"subreddit\": \"stress\"}\n",
    );
    data.extend_from_slice(b"{\"id\": \"b\", \"text\": \"  \"}\n");
    data.extend_from_slice(b"{\"id\": \"c\", \"text\": \"hi\", \"score\": 3}\n");
    data.extend_from_slice(b"\n");
    data.extend_from_slice(b"{\"id\": \"d\", \"text\": \"caf\xe9\"}\n");
    data.extend_from_slice(b"{\"id\": \"a\", \"text\": \"again\"}\n");
    data.extend_from_slice(b"{\"id\": 7, \"text\": \"numeric id\"}\n");
    data.extend_from_slice(b"[1, 2]\n{\"id\": \"e\", \"text\": ");
    std::fs::write(&path, &data).unwrap();
    let set = read_posts(&path, &input("id", "text", &["subreddit"])).unwrap();
    let ids: Vec<&str> = set.posts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "7"]);
    assert_eq!(set.posts[0].meta["subreddit"], "stress");
    assert_eq!((set.posts[0].line, set.posts[1].line), (1, 7));
    let lines = set.skipped_lines();
    let name = path.display().to_string();
    let expected = [
        format!("{name}:2: no text"),
        format!("{name}:3: unknown column: key `score`"),
        format!("{name}:5: invalid UTF-8"),
        format!("{name}:6: duplicate id"),
        format!("{name}:8: not an object"),
        format!("{name}:9: not JSON"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (l, e) in lines.iter().zip(&expected) {
        assert!(l.starts_with(e.as_str()), "{l} should start with {e}");
    }
    let counts = set.skipped_counts();
    let want: BTreeMap<String, usize> = [
        ("no text", 1),
        ("unknown column", 1),
        ("invalid UTF-8", 1),
        ("duplicate id", 1),
        ("not an object", 1),
        ("not JSON", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(counts, want);
}

#[test]
fn dreaddit_csv_layout_reads_as_is_with_quoted_line_breaks_and_an_empty_text_skipped() {
    let path = repo().join("manifests/synth/posts/dreaddit-layout.csv");
    let set = read_posts(&path, &input("post_id", "text", &[])).unwrap();
    assert_eq!(set.posts.len(), 2);
    let a = &set.posts[0];
    assert_eq!(a.id, "demo-csv-a");
    assert_eq!(a.line, 2);
    assert!(a.text.contains("keeps \"forgetting\" to fix") && a.text.contains('\n'));
    assert_eq!(a.meta["subreddit"], "stress");
    assert_eq!(a.meta["sentence_range"], "[0, 5]");
    // The first record spans lines 2-3, so the second starts on line 4.
    assert_eq!(set.posts[1].line, 4);
    let lines = set.skipped_lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].ends_with("dreaddit-layout.csv:5: no text: `text` is missing or empty"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_csv_without_the_named_column_or_with_an_extra_field_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.csv");
    std::fs::write(&path, "id,body\n1,hello\n").unwrap();
    let e = read_posts(&path, &input("id", "text", &[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.csv:1:") && e.contains("no column `text`") && e.contains("id, body"),
        "{e}"
    );
    std::fs::write(
        &path,
        "id,text\n1,hello,surplus\n2,\"fine, really\"\n3,\"open\n",
    )
    .unwrap();
    let set = read_posts(&path, &input("id", "text", &[])).unwrap();
    assert_eq!(set.posts.len(), 1);
    assert_eq!(set.posts[0].text, "fine, really");
    let lines = set.skipped_lines();
    assert!(
        lines[0].contains("p.csv:2: unknown column: 3 fields"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("p.csv:4: unterminated quote"),
        "{lines:?}"
    );
}

#[test]
fn the_shipped_demo_posts_all_read() {
    let path = repo().join("manifests/synth/posts/demo.jsonl");
    let set = read_posts(&path, &input("id", "text", &["subreddit"])).unwrap();
    assert_eq!((set.posts.len(), set.skipped.len()), (8, 0));
}
