//! `psy synth M --dry-run`: every stage's first prompt, its teacher and its answer schema,
//! rendered from the first post and the planner, without loading a model or calling anything.
//! What an earlier stage would write is shown as a `<placeholder>`, except that stage 3 plans
//! the post itself as the client's first turn.

use psy_core::dialogue::Dialogue;
use psy_core::synth_spec::{load_synth, StageId, TeacherKind};

use super::error::SynthError;
use super::pipeline::{read_manifest_posts, Planners};
use super::prompts::{self, Round};
use super::schemas;

pub fn dry_run(manifest: &std::path::Path) -> Result<String, SynthError> {
    let synth = load_synth(manifest)?;
    let posts = read_manifest_posts(&synth)?;
    let Some(post) = posts.posts.first() else {
        return Err(SynthError::Input {
            path: synth.input.clone(),
            line: 1,
            message: "no usable post (see the skipped lines above)".into(),
        });
    };
    for line in posts.skipped_lines() {
        eprintln!("skipped {line}");
    }
    let planners = Planners::build(&synth)?;
    let s = &synth.manifest.synth;
    let modality = planners.assign(std::slice::from_ref(post), &|_| None)[0].clone();
    let planner = planners.for_modality(modality.as_deref());
    let plan = planner.plan(&Dialogue::from_message(post.text.clone()));
    let focuses: Vec<String> = (1..=s.min_rounds)
        .map(|r| format!("<focus of round {r}, from stage 1>"))
        .collect();
    let mut out = format!(
        "dry run of {} on post `{}` ({}:{}): {} posts usable, {} skipped; nothing is called\n",
        synth.path.display(),
        post.id,
        posts.path.display(),
        post.line,
        posts.posts.len(),
        posts.skipped.len()
    );
    for stage in StageId::ALL {
        let spec = synth.manifest.stages.get(stage);
        let template = spec.template_or_default(stage);
        let teacher = synth.teacher(stage);
        let who = match teacher.kind {
            TeacherKind::Openai => format!(
                "openai {} model {} (key from ${})",
                teacher.base_url,
                teacher.model,
                if teacher.api_key_env.is_empty() {
                    "-"
                } else {
                    &teacher.api_key_env
                }
            ),
            TeacherKind::Psy => format!(
                "local psy model {}",
                if teacher.model.is_empty() {
                    "(default)"
                } else {
                    &teacher.model
                }
            ),
        };
        let (messages, schema) = match stage {
            StageId::Plan => (
                vec![(
                    "user",
                    prompts::plan_prompt(template, &post.text, s.min_rounds, s.max_rounds, &plan),
                )],
                schemas::plan_schema(s.min_rounds, s.max_rounds),
            ),
            StageId::Client => (
                vec![(
                    "user",
                    prompts::client_prompt(template, &post.text, &focuses, &plan),
                )],
                schemas::client_schema(focuses.len()),
            ),
            StageId::Counselor => (
                vec![
                    (
                        "system",
                        prompts::counselor_prompt(template, &plan, &focuses[0]),
                    ),
                    ("user", post.text.trim().to_string()),
                ],
                schemas::counselor_schema(),
            ),
            StageId::Filter => {
                let rounds = vec![Round {
                    patient: "<client turn 1, from stage 2>".into(),
                    think: "<reasoning of round 1, from stage 3>".into(),
                    reply: "<reply of round 1, from stage 3>".into(),
                }];
                let modalities = prompts::chosen_modalities(&plan);
                (
                    vec![(
                        "user",
                        prompts::filter_prompt(template, &rounds, &modalities),
                    )],
                    schemas::verdict_schema(),
                )
            }
        };
        out.push_str(&format!(
            "\n===== {} — teacher: {who}; max_tokens {} =====\n",
            prompts::stage_title(stage),
            spec.max_tokens
        ));
        for (role, text) in messages {
            out.push_str(&format!("--- {role} ---\n{text}\n"));
        }
        out.push_str(&format!("--- answer schema ---\n{schema}\n"));
    }
    Ok(out)
}
