//! A researcher's manifest mistakes each get their own clear error, naming the file, line
//! and column or the field, and never a panic.

use std::path::{Path, PathBuf};

use psy_core::manifest::ManifestError;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `files` into a fresh directory (paths relative to it) and returns the directory.
fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load(dir: &Path, name: &str) -> Result<psy_core::planner::Planner, ManifestError> {
    psy::planner(&dir.join(name))
}

fn err(files: &[(&str, &str)], name: &str) -> String {
    let dir = scratch(files);
    match load(dir.path(), name) {
        Ok(_) => panic!("{name} should have been rejected"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR"),
    }
}

const OK_BASE: &str =
    "schema = 1\n[modules]\ndiagnostic = [\"dsm5\"]\nmodality = [\"cbt\", \"act\"]\n";

#[test]
fn the_shipped_manifests_are_valid() {
    for m in [
        "manifests/psyllm.toml",
        "manifests/psyllm-qwen1.5b.toml",
        "manifests/examples/with-sfbt.toml",
    ] {
        psy::check_manifest(&root().join(m)).unwrap_or_else(|e| panic!("{m}: {e:#}"));
    }
    psy::check_manifest(&root().join("manifests/ablations/modules.toml")).unwrap();
}

#[test]
fn syntax_error_names_line_and_column() {
    let e = err(
        &[("run.toml", "schema = 1\n[modules\nmodality = []\n")],
        "run.toml",
    );
    assert!(e.starts_with("DIR/run.toml:2:"), "{e}");
}

#[test]
fn unknown_key_names_line_and_column() {
    let e = err(
        &[("run.toml", "schema = 1\n[planner]\ntop_k = 2\ntopk = 3\n")],
        "run.toml",
    );
    assert!(e.starts_with("DIR/run.toml:4:1:"), "{e}");
    assert!(e.contains("unknown field `topk`"), "{e}");
}

#[test]
fn wrong_type_names_line_and_column() {
    let e = err(
        &[("run.toml", "schema = 1\n[planner]\ntop_k = \"two\"\n")],
        "run.toml",
    );
    assert!(e.starts_with("DIR/run.toml:3:9:"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
}

/// The main job's manifest names its model under `$PSY_ASSETS`: the fetched file, or, before
/// the setup step fetched it, an error that says so.
#[test]
fn the_main_jobs_model_is_named_under_the_assets_dir() {
    let m = root().join("manifests/psyllm-qwen1.5b.toml");
    let want = psy_lm::runtime::assets::assets_dir()
        .join("qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    match psy::resolve_model(None, Some(&m)) {
        Ok(p) => assert_eq!(p, want),
        Err(e) => {
            assert!(!want.exists());
            let e = format!("{e:#}");
            assert!(e.contains("run scripts/setup.sh"), "{e}");
            assert!(e.contains(&want.display().to_string()), "{e}");
        }
    }
}

/// The main job's 1.5B replies at high risk with the protocol text alone (its drafts read as
/// judgemental or missed the means; README, "Crisis drafts of the 1.5B"), and keeps the base
/// manifest's locale.
#[test]
fn the_main_job_gives_the_protocol_alone_at_high_risk() {
    let run = psy_core::manifest::load_run(&root().join("manifests/psyllm-qwen1.5b.toml")).unwrap();
    assert_eq!(
        run.manifest.safety.crisis_drafts,
        psy_core::manifest::CrisisDrafts::ProtocolOnly
    );
    let base = psy_core::manifest::load_run(&root().join("manifests/psyllm.toml")).unwrap();
    assert_eq!(run.manifest.safety.locale, base.manifest.safety.locale);
}

#[test]
fn an_unknown_crisis_drafts_policy_names_line_and_choices() {
    let e = err(
        &[(
            "run.toml",
            "schema = 1\n[safety]\ncrisis_drafts = \"sometimes\"\n",
        )],
        "run.toml",
    );
    assert!(e.starts_with("DIR/run.toml:3:"), "{e}");
    assert!(e.contains("protocol-only"), "{e}");
}

#[test]
fn unknown_module_suggests_the_nearest_id() {
    let e = err(
        &[(
            "run.toml",
            "schema = 1\n[modules]\nmodality = [\"cbt\", \"actt\"]\n",
        )],
        "run.toml",
    );
    assert!(e.starts_with("DIR/run.toml:3:20:"), "{e}");
    assert!(e.contains("unknown modality module `actt`"), "{e}");
    assert!(e.contains("did you mean `act`"), "{e}");
}

#[test]
fn module_listed_under_the_wrong_kind() {
    let e = err(
        &[(
            "run.toml",
            "schema = 1\n[modules]\ndiagnostic = [\"cbt\"]\n",
        )],
        "run.toml",
    );
    assert!(
        e.contains("module `cbt` is a modality module, listed under `modules.diagnostic`"),
        "{e}"
    );
}

#[test]
fn removing_the_crisis_guard_is_refused_with_the_reason() {
    let e = err(
        &[("run.toml", "schema = 1\n[modules]\nsafety = []\n")],
        "run.toml",
    );
    assert!(e.contains("the crisis guard cannot be removed"), "{e}");
    assert!(e.contains("does not list `crisis-guard`"), "{e}");
    assert!(e.starts_with("DIR/run.toml:3:1"), "{e}");
    let e = err(
        &[("run.toml", "schema = 1\n[safety]\nenabled = false\n")],
        "run.toml",
    );
    assert!(
        e.contains("the crisis guard cannot be removed: `safety.enabled = false`"),
        "{e}"
    );
}

#[test]
fn extends_cycles_are_errors() {
    let e = err(
        &[
            ("a.toml", "schema = 1\nextends = \"b.toml\"\n"),
            ("b.toml", "schema = 1\nextends = \"a.toml\"\n"),
        ],
        "a.toml",
    );
    assert!(e.contains("`extends` forms a cycle"), "{e}");
    assert!(e.contains("a.toml -> ") && e.contains("b.toml -> "), "{e}");
}

#[test]
fn extends_a_missing_base() {
    let e = err(
        &[("a.toml", "schema = 1\nextends = \"nope.toml\"\n")],
        "a.toml",
    );
    assert!(
        e.starts_with("DIR/a.toml:2:12: `extends`: base manifest"),
        "{e}"
    );
}

#[test]
fn unsupported_schema() {
    let e = err(&[("run.toml", "schema = 2\n")], "run.toml");
    assert!(e.contains("unsupported schema 2"), "{e}");
}

#[test]
fn fixed_policy_needs_active_modalities() {
    let e = err(
        &[(
            "run.toml",
            &format!("{OK_BASE}[planner]\nmodality_policy = \"fixed\"\n"),
        )],
        "run.toml",
    );
    assert!(
        e.contains("`planner.fixed`: policy `fixed` needs at least one modality"),
        "{e}"
    );
    let e = err(
        &[(
            "run.toml",
            &format!("{OK_BASE}[planner]\nmodality_policy = \"fixed\"\nfixed = [\"dbt\"]\n"),
        )],
        "run.toml",
    );
    assert!(
        e.contains("unknown active modality (planner.fixed) module `dbt`"),
        "{e}"
    );
}

#[test]
fn a_broken_module_manifest_names_its_field() {
    let module =
        "schema = 1\n[module]\nid = \"x\"\nname = \"X\"\nversion = \"one\"\nkind = \"modality\"\n";
    let e = err(
        &[
            (
                "run.toml",
                "schema = 1\n[modules]\nplugins = [\"m.toml\"]\n",
            ),
            ("m.toml", module),
        ],
        "run.toml",
    );
    assert!(
        e.contains("m.toml: `module.version`: `one` is not a semantic version"),
        "{e}"
    );
    let module =
        "schema = 1\n[module]\nid = \"x\"\nname = \"X\"\nversion = \"0.1.0\"\nkind = \"therapy\"\n";
    let e = err(
        &[
            (
                "run.toml",
                "schema = 1\n[modules]\nplugins = [\"m.toml\"]\n",
            ),
            ("m.toml", module),
        ],
        "run.toml",
    );
    assert!(e.starts_with("DIR/m.toml:6:8:"), "{e}");
    let module = "schema = 1\n[module]\nid = \"x\"\nname = \"X\"\nversion = \"0.1.0\"\nkind = \"modality\"\n[[cues]]\nid = \"a\"\nlabel = \"A\"\nphrases = [\"_ sad\"]\n";
    let e = err(
        &[
            (
                "run.toml",
                "schema = 1\n[modules]\nplugins = [\"m.toml\"]\n",
            ),
            ("m.toml", module),
        ],
        "run.toml",
    );
    assert!(
        e.contains("`cues[0].phrases`: cue phrase `_ sad` may not start or end with a wildcard"),
        "{e}"
    );
}

#[test]
fn a_plugin_may_not_redefine_a_builtin_id() {
    let module = "schema = 1\n[module]\nid = \"cbt\"\nname = \"Mine\"\nversion = \"0.1.0\"\nkind = \"modality\"\n";
    let e = err(
        &[
            (
                "run.toml",
                "schema = 1\n[modules]\nplugins = [\"m.toml\"]\n",
            ),
            ("m.toml", module),
        ],
        "run.toml",
    );
    assert!(
        e.contains("module id `cbt` is defined twice: by builtin (psy-cbt) and by toml"),
        "{e}"
    );
}

#[test]
fn a_missing_plugin_file() {
    let e = err(
        &[(
            "run.toml",
            "schema = 1\n[modules]\nplugins = [\"gone.toml\"]\n",
        )],
        "run.toml",
    );
    assert!(
        e.contains("plugin") && e.contains("gone.toml does not exist"),
        "{e}"
    );
}

#[test]
fn an_ablation_variant_cannot_drop_the_crisis_guard() {
    let dir = scratch(&[
        ("base.toml", OK_BASE),
        (
            "ab.toml",
            "schema = 1\n[ablation]\nname = \"x\"\nbase = \"base.toml\"\n[[variants]]\nname = \"unsafe\"\n[variants.set.modules]\nsafety = []\n",
        ),
    ]);
    let e = psy::check_manifest(&dir.path().join("ab.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("variant `unsafe`") && e.contains("the crisis guard cannot be removed"),
        "{e}"
    );
}

#[test]
fn an_ablation_variant_with_an_unknown_key() {
    let dir = scratch(&[
        ("base.toml", OK_BASE),
        ("ab.toml", "schema = 1\n[ablation]\nname = \"x\"\nbase = \"base.toml\"\n[[variants]]\nname = \"v\"\n[variants.set.planner]\ntopk = 1\n"),
    ]);
    let e = psy::check_manifest(&dir.path().join("ab.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("variant `v`") && e.contains("unknown field `topk`"),
        "{e}"
    );
}

#[test]
fn extends_merges_tables_and_resolves_paths_per_file() {
    let dir = scratch(&[
        ("base/base.toml", "schema = 1\n[modules]\nmodality = [\"cbt\"]\nplugins = [\"sfbt.toml\"]\n[planner]\ntop_k = 3\n"),
        ("base/sfbt.toml", &std::fs::read_to_string(root().join("manifests/modules/sfbt.toml")).unwrap()),
        ("child.toml", "schema = 1\nextends = \"base/base.toml\"\n[planner]\nmin_score = 0.5\n"),
    ]);
    let p = load(dir.path(), "child.toml").unwrap();
    let m = &p.run().manifest;
    assert_eq!(m.planner.top_k, 3);
    assert_eq!(m.planner.min_score, 0.5);
    assert_eq!(m.modules.modality, vec!["cbt"]);
    assert!(
        p.registry().get("sfbt").is_some(),
        "the base's relative plugin path resolves against the base"
    );
}

#[test]
fn the_ablation_resolves_every_variant() {
    let ab = psy_core::manifest::load_ablation(&root().join("manifests/ablations/modules.toml"))
        .unwrap();
    let names: Vec<&str> = ab.variants.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "full",
            "no-diagnostics",
            "cbt-only",
            "no-modalities",
            "no-reasoning"
        ]
    );
    let nodiag = &ab.variants[1].1.manifest;
    assert!(nodiag.modules.diagnostic.is_empty());
    assert_eq!(
        nodiag.modules.modality, ab.base.manifest.modules.modality,
        "untouched keys keep the base value"
    );
    assert_eq!(
        ab.variants[4].1.manifest.prompting.mode,
        psy_core::manifest::PromptingMode::Direct
    );
    assert!(ab.variants.iter().all(|(_, r)| r
        .manifest
        .modules
        .safety
        .contains(&"crisis-guard".to_string())));
}
