//! Shared by the benches.

/// Whether a group is selected by the command-line filter: criterion filters benchmarks but
/// would still run each group's (slow) model setup.
pub fn wanted(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.contains(f.as_str()) || f.contains(group))
}
