//! The blind held-out sets in `tests/heldout/` are frozen: written on 2026-12-02 by a writer who
//! never saw psy's lexicons, exemplars or tests, they are measured and never tuned on. These
//! tests fail if a byte of them changes or if a file stops being the labelled set it claims to
//! be. A flawed item is fixed by retiring the set and writing a new one blind, not by editing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

const FROZEN: &[(&str, &str)] = &[
    (
        "crisis.jsonl",
        "1dc8d11773ff75455da737dbcb16b858e4f28d5e5e7598d0db8b009f7c5eaaa6",
    ),
    (
        "dialogues.jsonl",
        "19d996bc4232bace51bf2ca164e77cba580301421356e2edae7b1775f8412a18",
    ),
    (
        "vignettes.jsonl",
        "1c73225eb7ce6ead62d5bd5de9a5a8d29a08061c08298b9cfc64f390531de1d3",
    ),
    (
        "modality.jsonl",
        "da26573ec9e0f457ba5d587f72af81f694dc38a9529f1f1f0ce73761f9f617c5",
    ),
    (
        "risk-v2.jsonl",
        "a4118923f112a8e58ca83b76e8fee77474fcd3980d6f29ca1a8c902b093809c1",
    ),
    (
        "risk-v3.jsonl",
        "3f34c73d29b67fa7a68d94858540f80282af0b63edddb05a8f4392533568e2e5",
    ),
    (
        "risk-v4.jsonl",
        "57c12da43b86f210e6fe3789b71becbd6119ad4ff04e896038723d1c43af2fb9",
    ),
    (
        "risk-v5.jsonl",
        "b8356e64e2474e4056c3d81c659062f664f9083d247465789494c37a8ee77bc8",
    ),
    (
        "risk-v6.jsonl",
        "d5ad831032c1f24c6eb2f1f2d1d2405cc9335efa08c4bd16b0ffd7b36f9fb785",
    ),
    (
        "risk-v7.jsonl",
        "6edec4cdcccde918441f906d7b1706d7c12c9db29bd530f34f0811a1cb30126b",
    ),
    (
        "risk-v8.jsonl",
        "99dffcf2886a4344de9fc06a603b3c4f0c5a18a43f84c9cce5cda55f2300aaf6",
    ),
    (
        "risk-v9.jsonl",
        "a8a99c9ad99f590e56d63286496a9ca017bb1c63051def1069e6f38d3bc8afa1",
    ),
    (
        "risk-v10.jsonl",
        "aab41f7b2af8d4d41d0e1d14ad55aed915bb0772534d87c9a01ea5d851161def",
    ),
    (
        "risk-v11.jsonl",
        "ce932ac03d49bcaf1f76c445b4c5710f399ead80ac66158dce691a6d2a52e150",
    ),
    (
        "risk-v12.jsonl",
        "0f146804fc607f2e0e73f577cb20c152b8160013b48cdb974c63c6a995a72961",
    ),
    (
        "risk-v13.jsonl",
        "2c67f90f4ef0c2f387b8ca36b92d6ac34a71ef167c80694285fe5f36a4eb61c6",
    ),
    (
        "risk-v14.jsonl",
        "d9e5e5703d4f5c5680c70191a19a8dbf40c45a9b7503f65c6d3490beff21c9d5",
    ),
    (
        "risk-v15.jsonl",
        "69c96bc0cca18a92fdb23a9c1ace31f7281550b0a8e600b6ce85e0a81b7695ce",
    ),
    (
        "risk-v16.jsonl",
        "ea5d8ffc194d01c6ae59461a2f28d56408175deed4bb49145c72af75ab239575",
    ),
    (
        "risk-v17.jsonl",
        "2a5eaf8b2d73a6ad1a8a35a2c628a26a85367226b44c4c5f81dc50a971bb6f90",
    ),
    (
        "risk-v18.jsonl",
        "7e96e9d7bdca5e2bcdd9dc6a87b25a3b15bdab036f7e7948ee509c703b7307ba",
    ),
    (
        "risk-v19.jsonl",
        "d24624ea2bbb03ee63f86b970cc4c5312f3ed4c74744dbb73c1584e75b19dcce",
    ),
    (
        "risk-v20.jsonl",
        "e6030a67693f6082bed2747cd053758870169eb195c2ec6ca8abd322b65de459",
    ),
    (
        "risk-v23.jsonl",
        "46ce5a82538724e3876c0d6d19cd21f1961db4ed7003b7250e3b64558105bf6c",
    ),
    (
        "risk-v24.jsonl",
        "374241b115e9005f71c1a77e3cc743ec965dde36fafefa63706eee872520248c",
    ),
    (
        "risk-v25.jsonl",
        "f4279d42f6b924a586eed1dffac0a8f704932012878556d756581e450b2ea6c3",
    ),
    (
        "risk-v26.jsonl",
        "0fe48d4bffb85f166f2aa46173460f712b5e02bf666e4ed523d3e85c2b1eec6a",
    ),
    (
        "risk-v27.jsonl",
        "d1bf482f1d7130b27b115bc65837e3cbac75fcb46daf2fa6ff7615b0a1041949",
    ),
    (
        "risk-v28.jsonl",
        "009097dd8a337a1b9e709592b22d9220a6bd940fb2fefee60a0caf8cf7fbfe81",
    ),
    (
        "risk-v29.jsonl",
        "71622903f2644f86520bd7dbbbbadd5c7d63e2957f17c72ed4cac9345e419f10",
    ),
    (
        "risk-v30.jsonl",
        "f523d29e0a81584073424ce7be66a7db5afaa1b85702f3150da483450dbac9a9",
    ),
    (
        "risk-v31.jsonl",
        "b6a7bf10f86e42ce4b0c059986491e22a36b3e37c0b6745f88641a63b6356d16",
    ),
    (
        "risk-v32.jsonl",
        "061270d65f7bad55e3c77bbab1cc6100ed797d2640cfee5494e9cc026e9a87b2",
    ),
    (
        "risk-v33.jsonl",
        "9357756195c996d381ffeba6826d6375ba6ec315b4711be44ea7cef97178304f",
    ),
    (
        "risk-v34.jsonl",
        "68d0cc8bcb1113b6d943e65830c4a67d82c6bba655366a4ef4b00117dab86a94",
    ),
    (
        "risk-v35.jsonl",
        "8e97b25235be12f4f0b50a14460fa0111fe873b6ed6b08e162deaf7ce0ce2369",
    ),
    (
        "risk-v36.jsonl",
        "1a9e08a773465a06660514d8b8ba7f68c9829d1d1b681ec333bcd28a41407a2b",
    ),
    (
        "risk-v37.jsonl",
        "030410253f60f8eaed1a1bfc339825421cfaac5c1221fff79c5b58cd18e45a51",
    ),
    (
        "risk-v38.jsonl",
        "0144f451a6371cd9d37edbde29b3c6bbf2d4c39a2035fb4ebef01e41aa2abfa2",
    ),
    (
        "risk-v39.jsonl",
        "4b6b258b3eb0dbdc6eb72b6211a2507297267aa148e5cea3389731f806dad355",
    ),
    (
        "risk-v40.jsonl",
        "c799adeb09507af1212b4cb76cba34bcd5322e447aa466a6c8689279558b0369",
    ),
    (
        "risk-v41.jsonl",
        "f5d21680c9dd974a63ae5746f11f5b4141737cd4609ee1587beaeef1a467e944",
    ),
    (
        "risk-v42.jsonl",
        "ce3c521d3c4b0c11c3bca29720f3d3a707b5524ab27fcaf3906e32ab84861f0e",
    ),
    (
        "risk-v43.jsonl",
        "20e62970ac754cc19ea6f104f2de9034d15f67a989de4edada34d62a5d970c82",
    ),
    (
        "risk-v44.jsonl",
        "30274c615bc409edd54ae84bc32b6801253b3eec50e67198d3c1c73ea46111f8",
    ),
    (
        "risk-v45.jsonl",
        "65a95652c5d03d35c0ddfd76fa8f0188e42c424de4141b007b0155c744256be3",
    ),
    (
        "risk-v46.jsonl",
        "0a7fc7a6c410c9a0a312aee108f539efce4d13477c257b81df5a8610e9b48740",
    ),
    (
        "risk-v47.jsonl",
        "d3bd644019cd16fbe56af933a238cd53833ba80f19e6877b71e7aa4b317a2d24",
    ),
    (
        "risk-v48.jsonl",
        "45c7b3ea5c9d11269f6504572e1ad19b931f1467ecb0664fc8300eaecdac0dea",
    ),
    (
        "risk-v49.jsonl",
        "c9ff749b8314bc1230f544c36985dca334c7da1051007efbc7ee61dd9da69b18",
    ),
    (
        "risk-v50.jsonl",
        "5212c830a824c67d124e407f162691dbee02b7f9169d3fa1c78ac8559c196d71",
    ),
    (
        "risk-v51.jsonl",
        "47a4b835f23bec91f80e9eefd60158f522b57dbe2e7fb95f03f13824d0ff0ba6",
    ),
    (
        "risk-v52.jsonl",
        "04067127e5bb623bd6bb59073df2a9aa623f6a71c935270c7cdd88ebd399ef2c",
    ),
    (
        "risk-v53.jsonl",
        "9dc3319aac288f8550e556926cdbf96c50c807fc33a26dbf5f8fcf3d4ab18e6e",
    ),
    (
        "risk-v54.jsonl",
        "9a2301fb1c0a5ddcf38120fd1f7e0290d7bdba8a69f0c00d39c2c739c30a5eca",
    ),
    (
        "risk-v55.jsonl",
        "bfce8a6166787be9b591d200c2cef7cc0b4e78f5f16d8a05645ae868d031f406",
    ),
    (
        "risk-v56.jsonl",
        "dd514d7e2a8aa53f9eb92b86a1f1a992298c906435690bcd98f3aa767fcc950a",
    ),
    (
        "risk-v57.jsonl",
        "d1880a4f1962938d6fabc363e90fce8da02c77463fa79bafd65d833d86b5e81e",
    ),
    (
        "risk-v58.jsonl",
        "4647aae644439b13ed0f2ecdb35e9e380eb16aa910a5a672a74f21de84dc81f9",
    ),
    (
        "risk-v59.jsonl",
        "5d009f68195c0832d5598d33626ac377616a3c783ecaaf156a036529f0ccbe97",
    ),
    (
        "risk-v60.jsonl",
        "5d5314a0ad47a75e94794d22940664e28ff6e28141ae524d2ce038d0314dc8f3",
    ),
    (
        "risk-v61.jsonl",
        "3774fa523a4b6c23a6248e9ad414b08efab483cbf1880f605e3397f481ddf496",
    ),
    (
        "risk-v62.jsonl",
        "b1eefbedc3252deea6fdda7e8c5bc3a45a64cf4ceb081df17fa9d7a871b5ce6e",
    ),
    (
        "risk-v63.jsonl",
        "a8e1c882929fce8b2c5b282b6425b64137edb8d15c11ec0cf2308574b2a9642f",
    ),
    (
        "counsel-v2.jsonl",
        "b1e87fff3e7a433c517d1901e58e3643d427527c994f7fe1c0653dc955c480e4",
    ),
    (
        "counsel-v1.jsonl",
        "8439ff517d6e425548e265414dfc41a727a381df202f0bef6f5eed48ec1ebc95",
    ),
    (
        "modality-v2.jsonl",
        "6a6570389ed98fe9f2797944f71a4c01c2b9502c8d075b64e822b221ced14057",
    ),
];

const LEVELS: &[&str] = &["none", "low", "moderate", "high", "imminent"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/heldout")
}

fn rows(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1)))
        .collect()
}

fn str_of<'a>(r: &'a Value, key: &str) -> &'a str {
    r[key]
        .as_str()
        .unwrap_or_else(|| panic!("{r}: `{key}` is not a string"))
}

#[test]
fn held_out_files_are_frozen_by_sha256() {
    for (file, want) in FROZEN {
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let got = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            &got, want,
            "tests/heldout/{file} changed: held-out sets are measured, never edited"
        );
    }
}

#[test]
fn crisis_set_has_the_levels_and_sizes_it_promises() {
    let rows = rows("crisis.jsonl");
    let mut by_level: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        let level = str_of(r, "level");
        assert!(LEVELS.contains(&level), "{r}: unknown level");
        assert!(!str_of(r, "text").trim().is_empty());
        *by_level.entry(level).or_default() += 1;
    }
    let n = |l: &str| by_level.get(l).copied().unwrap_or(0);
    let (acute, elevated, none) = (
        n("high") + n("imminent"),
        n("moderate"),
        n("none") + n("low"),
    );
    eprintln!("held-out crisis: acute {acute}, elevated {elevated}, non-crisis {none}");
    assert_eq!((acute, elevated, none), (51, 42, 58));
}

#[test]
fn dialogues_give_a_level_after_every_client_turn() {
    let rows = rows("dialogues.jsonl");
    assert_eq!(rows.len(), 16);
    for r in &rows {
        let turns = r["turns"].as_array().unwrap();
        let levels = r["levels"].as_array().unwrap();
        assert_eq!(turns.len(), levels.len(), "{}", r["id"]);
        assert!(levels.iter().all(|l| LEVELS.contains(&l.as_str().unwrap())));
        assert_eq!(levels.last(), Some(&r["final_level"]), "{}", r["id"]);
    }
}

#[test]
fn vignettes_and_modality_messages_name_known_labels() {
    let conditions = [
        "mdd",
        "gad",
        "panic",
        "social-anxiety",
        "ptsd",
        "ocd",
        "adjustment",
        "insomnia",
        "bipolar1",
        "alcohol-use",
        "prolonged-grief",
        "bulimia",
        "anorexia",
        "adhd",
        "specific-phobia",
    ];
    let v = rows("vignettes.jsonl");
    assert_eq!(v.len(), 29);
    for r in &v {
        assert!(conditions.contains(&str_of(r, "condition")), "{r}");
        assert!(!r["messages"].as_array().unwrap().is_empty());
    }
    let modalities = [
        "cbt",
        "act",
        "psychodynamic",
        "humanistic",
        "dbt",
        "mi",
        "family-systems",
    ];
    let m = rows("modality.jsonl");
    assert_eq!(m.len(), 35);
    for r in &m {
        assert!(modalities.contains(&str_of(r, "modality")), "{r}");
    }
    // The second blind modality set (`tests/heldout/risk-v6.md`): six messages per modality.
    let m2 = rows("modality-v2.jsonl");
    assert_eq!(m2.len(), 42);
    for name in modalities {
        let n = m2.iter().filter(|r| str_of(r, "modality") == name).count();
        assert_eq!(n, 6, "{name}");
    }
}

/// Reads a blind risk set with psy's own reader (`psy eval risk`'s format) and checks it holds
/// the items, the expectations per label and the sessions its writer's table promises.
/// The expectations of risk-v10's brief (300 items), which later general sets follow.
const GENERAL_SET: &[(&str, usize)] = &[
    ("at least imminent", 28),
    ("at least high", 62),
    ("moderate to high", 45),
    ("at most low", 150),
    ("at most none", 15),
];

fn assert_risk_set(file: &str, items: usize, want: &[(&str, usize)], sessions: usize) {
    let read = psy_core::risk_eval::read_risk_set(&dir().join(file)).unwrap();
    assert_eq!(read.len(), items, "{file}");
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for i in &read {
        *by.entry(i.expect.label()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = want.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    assert_eq!(by, want, "{file}");
    let got = read.iter().filter(|i| i.messages.len() > 1).count();
    assert_eq!(got, sessions, "{file}");
}

#[test]
fn risk_v2_reads_as_the_expectations_it_promises() {
    // The second blind set is in `psy eval risk`'s own format: read it with psy's reader and
    // count what the README promises.
    assert_risk_set(
        "risk-v2.jsonl",
        230,
        &[
            ("at least high", 46),
            ("at least imminent", 22),
            ("moderate to high", 41),
            ("at least moderate", 6),
            ("low to moderate", 1),
            ("at most low", 77),
            ("at most none", 37),
        ],
        39,
    );
}

#[test]
fn risk_v3_reads_as_the_expectations_it_promises() {
    assert_risk_set(
        "risk-v3.jsonl",
        265,
        &[
            ("at least high", 53),
            ("at least imminent", 14),
            ("moderate to high", 40),
            ("at least moderate", 10),
            ("at most low", 130),
            ("at most none", 18),
        ],
        46,
    );
}

#[test]
fn risk_v4_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v4.md`).
    assert_risk_set(
        "risk-v4.jsonl",
        274,
        &[
            ("at least imminent", 21),
            ("at least high", 55),
            ("moderate to high", 50),
            ("at most low", 133),
            ("at most none", 15),
        ],
        55,
    );
}

#[test]
fn risk_v5_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v5.md`).
    assert_risk_set(
        "risk-v5.jsonl",
        276,
        &[
            ("at least imminent", 21),
            ("at least high", 56),
            ("moderate to high", 50),
            ("at most low", 134),
            ("at most none", 15),
        ],
        51,
    );
}

#[test]
fn risk_v6_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v6.md`).
    assert_risk_set(
        "risk-v6.jsonl",
        279,
        &[
            ("at least imminent", 21),
            ("at least high", 56),
            ("moderate to high", 51),
            ("at most low", 136),
            ("at most none", 15),
        ],
        54,
    );
}

#[test]
fn risk_v7_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v7.md`).
    assert_risk_set(
        "risk-v7.jsonl",
        290,
        &[
            ("at least imminent", 22),
            ("at least high", 58),
            ("moderate to high", 55),
            ("at most low", 140),
            ("at most none", 15),
        ],
        57,
    );
}

#[test]
fn risk_v8_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v8.md`).
    assert_risk_set(
        "risk-v8.jsonl",
        300,
        &[
            ("at least imminent", 25),
            ("at least high", 60),
            ("moderate to high", 55),
            ("at most low", 145),
            ("at most none", 15),
        ],
        60,
    );
}

#[test]
fn risk_v9_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/risk-v9.md`).
    assert_risk_set(
        "risk-v9.jsonl",
        300,
        &[
            ("at least imminent", 25),
            ("at least high", 60),
            ("moderate to high", 55),
            ("at most low", 145),
            ("at most none", 15),
        ],
        60,
    );
}

#[test]
fn risk_v10_v20_v23_v24_v26_v28_v34_v35_read_as_the_expectations_they_promise() {
    // Counts from the writers' own tables (`tests/heldout/risk-v10.md`, `risk-v20.md`,
    // `risk-v23.md`, `risk-v24.md`, `risk-v26.md`, `risk-v28.md`, `risk-v34.md`, `risk-v35.md`:
    // one brief, eight writers): 102
    // of the 300 are sessions, among them crises followed by the client reporting safety (at
    // most low) and crises followed by calm but unsafe turns.
    for file in [
        "risk-v10.jsonl",
        "risk-v20.jsonl",
        "risk-v23.jsonl",
        "risk-v24.jsonl",
        "risk-v26.jsonl",
        "risk-v28.jsonl",
        "risk-v34.jsonl",
        "risk-v35.jsonl",
    ] {
        assert_risk_set(file, 300, GENERAL_SET, 102);
    }
}

#[test]
fn risk_v25_v27_v29_read_as_the_expectations_they_promise() {
    // The writers' tables (`tests/heldout/risk-v25.md`, `risk-v27.md`, `risk-v29.md`): someone
    // else's crisis
    // (at most low), the client's own alone or beside another's (at least high), a passive wish
    // beside another's.
    for file in ["risk-v25.jsonl", "risk-v27.jsonl", "risk-v29.jsonl"] {
        assert_risk_set(
            file,
            150,
            &[
                ("at most low", 75),
                ("at least high", 55),
                ("moderate to high", 20),
            ],
            40,
        );
    }
}

#[test]
fn counsel_v2_reads_as_the_expectations_it_promises() {
    // `tests/heldout/counsel-v2.md`: 72 ordinary and 16 look-alike sessions to stay at low or
    // below, 16 whose last turn is high, 16 moderate.
    assert_risk_set(
        "counsel-v2.jsonl",
        120,
        &[
            ("at least high", 16),
            ("moderate to high", 16),
            ("at most low", 88),
        ],
        120,
    );
}

#[test]
fn the_after_crisis_sets_read_as_the_expectations_they_promise() {
    // One brief, fifteen writers (`tests/heldout/risk-v11.md` ... `-v19.md`, `-v30.md` ...
    // `-v33.md`, `-v36.md`, `-v37.md`): 120 sessions after a crisis each, 30 that sound safe but
    // are not, 30 ambiguous, 60 credibly safe. risk-v38/v39 have the same shape after a threat to
    // harm someone else (`risk-v38.md`, `-v39.md`: group A is the person threatened arriving).
    for file in [
        "risk-v11.jsonl",
        "risk-v12.jsonl",
        "risk-v13.jsonl",
        "risk-v14.jsonl",
        "risk-v15.jsonl",
        "risk-v16.jsonl",
        "risk-v17.jsonl",
        "risk-v18.jsonl",
        "risk-v19.jsonl",
        "risk-v30.jsonl",
        "risk-v31.jsonl",
        "risk-v32.jsonl",
        "risk-v33.jsonl",
        "risk-v36.jsonl",
        "risk-v37.jsonl",
        "risk-v38.jsonl",
        "risk-v39.jsonl",
    ] {
        assert_risk_set(
            file,
            120,
            &[
                ("at least high", 30),
                ("at least moderate", 30),
                ("at most low", 60),
            ],
            120,
        );
    }
}

#[test]
fn counsel_v1_reads_as_the_expectations_it_promises() {
    // Counts from the writer's own table (`tests/heldout/counsel-v1.md`): 60 sessions, 44
    // ordinary or look-alike ones to stay at low or below.
    assert_risk_set(
        "counsel-v1.jsonl",
        60,
        &[
            ("at least high", 8),
            ("moderate to high", 8),
            ("at most low", 44),
        ],
        60,
    );
}

#[test]
fn risk_v40_reads_as_the_expectations_it_promises() {
    // Counts from the writer's table (`tests/heldout/risk-v40.md`): 160 items about harming
    // someone else, 40 sessions among the look-alikes.
    assert_risk_set(
        "risk-v40.jsonl",
        160,
        &[
            ("at least high", 40),
            ("at least moderate", 40),
            ("at most low", 80),
        ],
        40,
    );
}

#[test]
fn risk_v41_v43_read_as_the_expectations_they_promise() {
    // Counts from the writers' tables (`tests/heldout/risk-v41.md`, `risk-v43.md`: one brief,
    // two writers): 160 items that deny or negate harm, real risk among them; 60 sessions (A 10,
    // B 10, D 40).
    for file in ["risk-v41.jsonl", "risk-v43.jsonl"] {
        assert_risk_set(
            file,
            160,
            &[
                ("at least high", 40),
                ("at least moderate", 40),
                ("at most low", 80),
            ],
            60,
        );
    }
}

#[test]
fn risk_v50_reads_as_the_expectations_it_promises() {
    // Counts from the writer's table (`tests/heldout/risk-v50.md`, risk-v43's brief with ten
    // answers to a counselor's safety question in C): 160 items, 63 sessions (A 10, B 13, D 40).
    assert_risk_set(
        "risk-v50.jsonl",
        160,
        &[
            ("at least high", 40),
            ("at least moderate", 40),
            ("at most low", 80),
        ],
        63,
    );
}

#[test]
fn risk_v52_reads_as_the_expectations_it_promises() {
    // Counts from the writer's table (`tests/heldout/risk-v52.md`, risk-v50's brief, a new
    // writer): 160 items, 59 sessions (A 10, B 9, D 40).
    assert_risk_set(
        "risk-v52.jsonl",
        160,
        &[
            ("at least high", 40),
            ("at least moderate", 40),
            ("at most low", 80),
        ],
        59,
    );
}

#[test]
fn risk_v42_reads_as_the_expectations_it_promises() {
    // Counts from the writer's table (`tests/heldout/risk-v42.md`, risk-v34's brief in other
    // words): 300 items, 100 of them sessions.
    assert_risk_set("risk-v42.jsonl", 300, GENERAL_SET, 100);
}

#[test]
fn risk_v44_v48_v51_read_as_the_expectations_they_promise() {
    // Counts from the writers' tables (`tests/heldout/risk-v44.md`, `risk-v48.md`,
    // `risk-v51.md`, `risk-v57.md`, `risk-v58.md` to `risk-v63.md`, risk-v42's brief, ten new
    // writers): 300 items, 100 of them sessions.
    for file in [
        "risk-v44.jsonl",
        "risk-v48.jsonl",
        "risk-v51.jsonl",
        "risk-v57.jsonl",
        "risk-v58.jsonl",
        "risk-v59.jsonl",
        "risk-v60.jsonl",
        "risk-v61.jsonl",
        "risk-v62.jsonl",
        "risk-v63.jsonl",
    ] {
        assert_risk_set(file, 300, GENERAL_SET, 100);
    }
    // `risk-v54.md`, the same brief, a fourth writer: 101 sessions.
    assert_risk_set("risk-v54.jsonl", 300, GENERAL_SET, 101);
}

#[test]
fn risk_v45_reads_as_the_expectations_it_promises() {
    // Counts from the writer's table (`tests/heldout/risk-v45.md`): 160 look-alikes and the
    // real thing dressed as them; 53 sessions (A 10, B 8, D 35).
    assert_risk_set(
        "risk-v45.jsonl",
        160,
        &[
            ("at least high", 40),
            ("at least moderate", 30),
            ("at most low", 90),
        ],
        53,
    );
}

#[test]
fn risk_v46_v47_v49_v53_v55_v56_read_as_the_expectations_they_promise() {
    // Counts from the writers' tables (`tests/heldout/risk-v46.md`, `risk-v47.md`, `risk-v49.md`,
    // `risk-v53.md`, `risk-v55.md`, `risk-v56.md`: one brief, six writers): 120 sessions after a crisis, 40 not over, 20 over
    // with the thoughts still there, 60 credibly resolved.
    for file in [
        "risk-v46.jsonl",
        "risk-v47.jsonl",
        "risk-v49.jsonl",
        "risk-v53.jsonl",
        "risk-v55.jsonl",
        "risk-v56.jsonl",
    ] {
        assert_risk_set(
            file,
            120,
            &[
                ("at least high", 40),
                ("at least moderate", 20),
                ("at most low", 60),
            ],
            120,
        );
    }
}
