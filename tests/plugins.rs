//! The three ways to add a module — TOML only, a static crate, a dynamic library — all end
//! in the same registry and change the plan.

use std::path::{Path, PathBuf};
use std::process::Command;

use psy_core::dialogue::Dialogue;
use psy_core::registry::Source;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/` of this test run (the test binary lives in `target/release/deps/`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the example plugin library as a researcher would, in its own target directory
/// (a nested cargo may not wait on the lock of the one running this test).
fn build_example_dylib() -> PathBuf {
    let dir = target_dir().join("example-dylib");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "psy-example-dylib"])
        .env("CARGO_TARGET_DIR", &dir)
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building plugins/example-dylib failed");
    let name = format!(
        "{}psy_example_dylib{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    dir.join("release").join(name)
}

/// Compiles a C file into a shared library (a plugin that is wrong on purpose).
fn c_library(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let out = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&c)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success());
    out
}

#[test]
fn every_builtin_module_is_registered() {
    let r = psy::builtin_registry().unwrap();
    let ids: Vec<&str> = r
        .entries()
        .iter()
        .map(|e| e.spec().module.id.as_str())
        .collect();
    for id in [
        "dsm5",
        "icd11",
        "crisis-guard",
        "cbt",
        "act",
        "psychodynamic",
        "humanistic",
        "dbt",
        "mi",
        "family-systems",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(r
        .entries()
        .iter()
        .all(|e| matches!(e.source, Source::Builtin(_))));
}

#[test]
fn a_toml_only_modality_is_listed_and_chosen_for_a_matching_dialogue() {
    let manifest = root().join("manifests/examples/with-sfbt.toml");
    let rows = psy::list_plugins(Some(&manifest), &[]).unwrap();
    let sfbt = rows.iter().find(|r| r.id == "sfbt").expect("sfbt listed");
    assert_eq!(sfbt.kind, "modality");
    assert!(
        sfbt.source.starts_with("toml ") && sfbt.source.ends_with("manifests/modules/sfbt.toml"),
        "{}",
        sfbt.source
    );

    let planner = psy::planner(&manifest).unwrap();
    let plan = planner.plan(&Dialogue::from_message(
        "I want to focus on what is already working. Last week there were two days when things went better, \
         and I'd like to take small steps toward more days like that. If a miracle happened tonight, I'd wake up calm.",
    ));
    let best = &plan.modalities[0];
    assert_eq!(
        best.id,
        "sfbt",
        "modalities: {:?}",
        plan.modalities
            .iter()
            .map(|m| (&m.id, m.score))
            .collect::<Vec<_>>()
    );
    assert!(best.chosen);
    assert!(
        plan.reasoning_steps.iter().any(|s| s.source == "sfbt"),
        "its steps reach the plan"
    );
    assert!(
        plan.prompt
            .system
            .contains("[Solution-Focused Brief Therapy]"),
        "its guidelines reach the prompt:\n{}",
        plan.prompt.system
    );
}

#[test]
fn the_example_dylib_loads_through_a_manifest_and_contributes_to_the_plan() {
    let lib = build_example_dylib();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("run.toml");
    std::fs::write(
        &manifest,
        format!(
            "schema = 1\nextends = \"{}\"\n[modules]\nmodality = [\"cbt\", \"humanistic\", \"behavioural-activation\"]\nplugins = [\"{}\"]\n",
            root().join("manifests/psyllm.toml").display(),
            lib.display()
        ),
    )
    .unwrap();
    let rows = psy::list_plugins(Some(&manifest), &[]).unwrap();
    let ba = rows
        .iter()
        .find(|r| r.id == "behavioural-activation")
        .expect("listed");
    assert_eq!(ba.source, format!("dylib {}", lib.display()));

    let planner = psy::planner(&manifest).unwrap();
    let plan = planner.plan(&Dialogue::from_message(
        "Since the winter I stopped going to choir, I stay in bed most weekends and I cancel plans with friends.",
    ));
    let choice = plan
        .modalities
        .iter()
        .find(|m| m.id == "behavioural-activation")
        .unwrap();
    assert!(choice.chosen && choice.score > 0.7, "{choice:?}");
    assert_eq!(choice.cues[0].text, "stopped going");
    assert_eq!(choice.techniques[0].id, "activity-scheduling");
    assert!(plan
        .reasoning_steps
        .iter()
        .any(|s| s.id == "behavioural-activation.activity-link"));
}

#[test]
fn a_wrong_abi_library_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_library(
        dir.path(),
        "wrongabi",
        "unsigned int psy_plugin_abi_version(void) { return 99; }\n",
    );
    let e = psy::list_plugins(None, std::slice::from_ref(&lib))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{}: plugin ABI version 99, this psy speaks ABI version 1; rebuild the plugin against psy-core {}", lib.display(), env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_library(
        dir.path(),
        "notaplugin",
        "int add(int a, int b) { return a + b; }\n",
    );
    let e = psy::list_plugins(None, std::slice::from_ref(&lib))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: not a psy plugin: it does not export `psy_plugin_abi_version`",
            lib.display()
        )
    );

    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, "not an ELF file").unwrap();
    let e = psy::list_plugins(None, std::slice::from_ref(&fake))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}: cannot load as a dynamic library",
            fake.display()
        )),
        "{e}"
    );
}

#[test]
fn a_plugin_for_another_engine_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_library(
        dir.path(),
        "future",
        "unsigned int psy_plugin_abi_version(void) { return 1; }\nconst char* psy_plugin_engine_requirement(void) { return \">=9.0\"; }\n",
    );
    let e = psy::list_plugins(None, std::slice::from_ref(&lib))
        .unwrap_err()
        .to_string();
    assert!(e.contains("plugin requires psy-core `>=9.0`"), "{e}");
}

#[test]
fn psy_plugins_list_shows_id_kind_version_source() {
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args([
            "plugins",
            "list",
            "--manifest",
            "manifests/examples/with-sfbt.toml",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let cbt = text
        .lines()
        .find(|l| l.starts_with("cbt "))
        .expect("cbt row");
    assert!(
        cbt.contains("modality") && cbt.contains("builtin (psy-cbt)"),
        "{cbt}"
    );
    let sfbt = text
        .lines()
        .find(|l| l.starts_with("sfbt "))
        .expect("sfbt row");
    assert!(
        sfbt.contains("toml ") && sfbt.contains("sfbt.toml"),
        "{sfbt}"
    );
}
