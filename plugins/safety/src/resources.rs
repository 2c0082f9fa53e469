//! Crisis lines by locale (`resources.toml`), with the run manifest's overrides.
//!
//! Giving the wrong country's number in a crisis is a real harm, so the lookup is explicit:
//! the manifest's entries for the locale win, then the built-in table, then a generic
//! "local emergency services" entry that is true everywhere.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use psy_core::module::CrisisResource;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceFile {
    schema: u32,
    #[serde(rename = "resource")]
    resources: Vec<CrisisResource>,
    emergency: BTreeMap<String, String>,
    poison: BTreeMap<String, PoisonLine>,
    aliases: BTreeMap<String, String>,
    fallback: CrisisResource,
}

/// A poison information line: who to call after an overdose, next to emergency services.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoisonLine {
    pub name: String,
    pub number: String,
}

fn table() -> &'static ResourceFile {
    static TABLE: OnceLock<ResourceFile> = OnceLock::new();
    TABLE.get_or_init(|| {
        let f: ResourceFile = toml::from_str(include_str!("../resources.toml"))
            .unwrap_or_else(|e| panic!("plugins/safety/resources.toml is invalid: {e}"));
        assert_eq!(
            f.schema, 1,
            "plugins/safety/resources.toml: unsupported schema"
        );
        f
    })
}

/// Canonical locale code: upper case, region part of `en-GB` / `en_US`, aliases applied.
pub fn normalise_locale(locale: &str) -> String {
    let up = locale.trim().to_uppercase().replace('_', "-");
    let region = up.rsplit('-').next().unwrap_or(&up).to_string();
    table().aliases.get(&region).cloned().unwrap_or(region)
}

/// The crisis resources to give for `locale`: the manifest's entries for that locale replace
/// the built-in ones; a locale with neither gets local emergency services.
pub fn resources_for(locale: &str, manifest_resources: &[CrisisResource]) -> Vec<CrisisResource> {
    let want = normalise_locale(locale);
    let from_manifest: Vec<CrisisResource> = manifest_resources
        .iter()
        .filter(|r| normalise_locale(&r.locale) == want)
        .cloned()
        .collect();
    if !from_manifest.is_empty() {
        return from_manifest;
    }
    let builtin: Vec<CrisisResource> = table()
        .resources
        .iter()
        .filter(|r| r.locale == want)
        .cloned()
        .collect();
    if !builtin.is_empty() {
        return builtin;
    }
    vec![table().fallback.clone()]
}

/// The emergency number for a locale, when the built-in table knows it.
pub fn emergency_number(locale: &str) -> Option<&'static str> {
    table()
        .emergency
        .get(&normalise_locale(locale))
        .map(String::as_str)
}

/// The poison information line for a locale, when the built-in table has one.
pub fn poison_line(locale: &str) -> Option<&'static PoisonLine> {
    table().poison.get(&normalise_locale(locale))
}

/// Phrases that show a reply sends the client to emergency services now: the locale's
/// emergency numbers, or "emergency number" where the table has none.
pub fn emergency_phrases(locale: &str) -> Vec<String> {
    match emergency_number(locale) {
        Some(n) => numbers(n),
        None => vec!["emergency number".into()],
    }
}

/// Resources as one phrase for a sentence: "Samaritans (call 116 123 ...)".
pub fn describe(resources: &[CrisisResource]) -> String {
    resources
        .iter()
        .map(|r| format!("{} ({})", r.name, r.contact))
        .collect::<Vec<_>>()
        .join(", or ")
}

/// Phrases that show a reply names one of these resources: the names and the numbers.
pub fn resource_phrases(resources: &[CrisisResource], emergency: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        let s = s.trim().to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    for r in resources {
        push(r.name.to_lowercase());
        for n in numbers(&r.contact) {
            push(n);
        }
    }
    if let Some(e) = emergency {
        for n in numbers(e) {
            push(n);
        }
    }
    push("emergency".into());
    out
}

/// Digit runs, allowing single spaces inside ("116 123", "13 11 14").
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_digit() {
            cur.push(*c);
        } else if *c == ' '
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
        {
            cur.push(' ');
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    // Longer runs first so the most specific contact is tried first.
    out.retain(|n| n.len() >= 3);
    out
}
