//! Modality fidelity: the `[[rubric]]` items a therapy module declares, as a rubric.

use psy_core::manifest_error::ManifestError;
use psy_core::module::{ModuleSpec, RubricItem};

use super::spec::{check_id, Dimension, Rubric};

impl Rubric {
    /// Builds the fidelity rubric of module `module_id` from its `[[rubric]]` items. The
    /// items' `low` and `high` anchors describe the ends of each scale; the levels between get
    /// a text placing them between the anchors, so that every level is described.
    pub fn from_module_items(
        module_id: &str,
        items: &[RubricItem],
    ) -> Result<Rubric, ManifestError> {
        let origin = format!("module `{module_id}`");
        let invalid = |field: String, message: String| ManifestError::Invalid {
            origin: origin.clone(),
            field,
            message,
        };
        if items.is_empty() {
            return Err(invalid(
                "rubric".into(),
                "the module declares no [[rubric]] items".into(),
            ));
        }
        let mut dimensions: Vec<Dimension> = Vec::new();
        for item in items {
            check_id(&item.id).map_err(|m| invalid("rubric.id".into(), m))?;
            if dimensions.iter().any(|d| d.id == item.id) {
                return Err(invalid(
                    format!("rubric.{}", item.id),
                    format!("rubric item `{}` is declared twice", item.id),
                ));
            }
            let (min, max) = (i64::from(item.scale[0]), i64::from(item.scale[1]));
            if min >= max {
                return Err(invalid(
                    format!("rubric.{}.scale", item.id),
                    format!("the scale [{min}, {max}] needs its minimum below its maximum"),
                ));
            }
            let levels = (min..=max).map(|s| level_text(item, s, min, max)).collect();
            dimensions.push(Dimension {
                id: item.id.clone(),
                name: item.name.clone(),
                question: item.description.trim().to_string(),
                min,
                max,
                levels,
                source: module_id.to_string(),
            });
        }
        Ok(Rubric {
            id: module_id.to_string(),
            version: "module".into(),
            title: format!("Fidelity to the {module_id} module"),
            description: format!(
                "How closely the reply practises what the {module_id} module asks of a counselor, item by item."
            ),
            instructions: format!(
                "Judge how faithfully the counselor's reply practises the {module_id} approach at this point of the conversation. \
                 Score only what the reply does; do not reward length or jargon."
            ),
            dimensions,
        })
    }
}

impl Rubric {
    /// The fidelity rubric of a module manifest: its `[[rubric]]` items, with the module's
    /// name in the title and its version as the rubric version.
    pub fn from_module(spec: &ModuleSpec) -> Result<Rubric, ManifestError> {
        let mut rubric = Rubric::from_module_items(&spec.module.id, &spec.rubric)?;
        rubric.version = spec.module.version.clone();
        rubric.title = format!("Fidelity to {}", spec.module.name);
        Ok(rubric)
    }

    /// The set a run judges: its rubrics, then the fidelity items of every active modality
    /// module that declares any, merged into one verdict with unique dimension ids.
    /// (Diagnostic modules' items grade the reasoning trace, not the reply; pass only the
    /// modules whose items grade replies.)
    pub fn judged_set(
        id: &str,
        rubrics: &[Rubric],
        modules: &[&ModuleSpec],
    ) -> Result<Rubric, ManifestError> {
        let mut all = rubrics.to_vec();
        for spec in modules.iter().filter(|s| !s.rubric.is_empty()) {
            all.push(Rubric::from_module(spec)?);
        }
        Ok(Rubric::merge(id, &all))
    }
}

/// The text of one score: the anchors at the ends, a position between them elsewhere.
fn level_text(item: &RubricItem, score: i64, min: i64, max: i64) -> String {
    let low = if item.low.trim().is_empty() {
        format!("Shows none of this: {}", item.description.trim())
    } else {
        item.low.trim().to_string()
    };
    let high = if item.high.trim().is_empty() {
        format!("Shows this fully: {}", item.description.trim())
    } else {
        item.high.trim().to_string()
    };
    if score == min {
        return low;
    }
    if score == max {
        return high;
    }
    let percent = (100 * (score - min) + (max - min) / 2) / (max - min);
    let leaning = if 2 * (score - min) < max - min {
        "closer to the lowest anchor"
    } else if 2 * (score - min) > max - min {
        "closer to the highest anchor"
    } else {
        "halfway"
    };
    format!(
        "Between the anchors, about {percent}% of the way from the lowest to the highest ({leaning}). Lowest: {low} Highest: {high}"
    )
}
