//! Several rubrics judged as one set (a run's rubrics plus the active modules' fidelity items).

use std::collections::BTreeMap;

use super::spec::Rubric;

impl Rubric {
    /// Merges rubrics into one judged set, in order. A rubric given twice (same content) is
    /// kept once; a dimension id that several rubrics use becomes `<rubric>.<dimension>` (with
    /// a numeric suffix if that is still taken), so verdict keys stay unique. Each dimension
    /// keeps its `source` rubric.
    pub fn merge(id: &str, rubrics: &[Rubric]) -> Rubric {
        let mut kept: Vec<&Rubric> = Vec::new();
        let mut hashes: Vec<String> = Vec::new();
        for r in rubrics {
            let h = r.content_hash();
            if !hashes.contains(&h) {
                hashes.push(h);
                kept.push(r);
            }
        }
        let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &kept {
            for d in &r.dimensions {
                *uses.entry(d.id.as_str()).or_default() += 1;
            }
        }
        let mut dimensions = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        for r in &kept {
            for d in &r.dimensions {
                let mut dim = d.clone();
                if uses[d.id.as_str()] > 1 {
                    let base = format!("{}.{}", r.id, d.id);
                    let mut candidate = base.clone();
                    let mut k = 2;
                    while taken.contains(&candidate) {
                        candidate = format!("{base}.{k}");
                        k += 1;
                    }
                    dim.id = candidate;
                }
                taken.push(dim.id.clone());
                dimensions.push(dim);
            }
        }
        let instructions = kept
            .iter()
            .map(|r| format!("{}: {}", r.title, r.instructions))
            .collect::<Vec<_>>()
            .join("\n\n");
        Rubric {
            id: id.to_string(),
            version: kept
                .iter()
                .map(|r| format!("{}@{}", r.id, r.version))
                .collect::<Vec<_>>()
                .join("+"),
            title: kept
                .iter()
                .map(|r| r.title.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
            description: kept
                .iter()
                .map(|r| r.description.as_str())
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            instructions,
            dimensions,
        }
    }
}
