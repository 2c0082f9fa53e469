//! The four stages over every post, each writing its own append-only file in the output
//! directory: `plan.jsonl` (stage 1), `client.jsonl` (2), `counselor.jsonl` (3, one line per
//! round, written in round order with the history of the rounds before it), `filter.jsonl`
//! (4, every verdict) and `records.jsonl` (the kept conversations, in the pipeline record
//! format). A rerun with `--resume` skips every finished (post, stage, round) key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use psy_core::dialogue::{Dialogue, Message};
use psy_core::manifest::ModalityPolicy;
use psy_core::planner::{Plan, Planner};
use psy_core::reply_rules;
use psy_core::synth_spec::{load_synth, ResolvedSynth, StageId, SynthModalityPolicy};
use psy_eval::dataset::{fnv1a64, split_inline_trace};
use psy_eval::judge::ChatMessage;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::SynthError;
use super::failures::FailureLog;
use super::layout::{FAILURES_FILE, INPUTS_FILE, RECORDS_FILE, STAGE_FILES};
use super::posts::{read_posts, Post, PostSet};
use super::prompts::{self, Round};
use super::report::{write_report, SynthReport};
use super::schemas;
use super::store::Store;
use super::teacher::{AskError, Budget, Teacher, Teachers};

/// What `psy synth` was asked to do.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub manifest: PathBuf,
    /// Default: `runs/synth-<name>`.
    pub output: Option<PathBuf>,
    pub resume: bool,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// The output directory of a manifest: `--output`, else `runs/synth-<name>`.
pub fn output_dir(synth: &ResolvedSynth, output: Option<&Path>) -> PathBuf {
    match output {
        Some(o) => o.to_path_buf(),
        None => {
            let name = if synth.manifest.synth.name.trim().is_empty() {
                synth
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "synth".into())
            } else {
                synth.manifest.synth.name.trim().to_string()
            };
            PathBuf::from("runs").join(format!("synth-{name}"))
        }
    }
}

/// Planners of a synth run: the run's own, and for `balanced` one per modality (the run with
/// `planner.fixed = [m]`), so a post keeps the modality it was given in every round.
pub struct Planners {
    pub run: Planner,
    pub fixed: HashMap<String, Planner>,
    pub policy: SynthModalityPolicy,
}

impl Planners {
    pub fn build(synth: &ResolvedSynth) -> Result<Planners, SynthError> {
        let policy = synth.manifest.synth.modality;
        let mut run = synth.run.clone();
        if policy == SynthModalityPolicy::Fixed {
            run.manifest.planner.modality_policy = ModalityPolicy::Fixed;
        }
        let mut fixed = HashMap::new();
        if policy == SynthModalityPolicy::Balanced {
            for m in &run.manifest.modules.modality {
                let mut r = run.clone();
                r.manifest.planner.modality_policy = ModalityPolicy::Fixed;
                r.manifest.planner.fixed = vec![m.clone()];
                fixed.insert(m.clone(), crate::planner_for_run(r)?);
            }
        }
        Ok(Planners {
            run: crate::planner_for_run(run)?,
            fixed,
            policy,
        })
    }

    /// The planner of a post given `modality` (balanced), else the run's.
    pub fn for_modality(&self, modality: Option<&str>) -> &Planner {
        modality
            .and_then(|m| self.fixed.get(m))
            .unwrap_or(&self.run)
    }

    /// `balanced`: each post in file order gets the active modality used least so far (ties:
    /// the higher indication score for the post, then the manifest's order). Posts already
    /// planned keep theirs.
    pub fn assign(
        &self,
        posts: &[Post],
        planned: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Option<String>> {
        if self.policy != SynthModalityPolicy::Balanced {
            return vec![None; posts.len()];
        }
        let ids = &self.run.run().manifest.modules.modality;
        let mut used: BTreeMap<&str, usize> = ids.iter().map(|m| (m.as_str(), 0)).collect();
        let mut out = Vec::with_capacity(posts.len());
        for p in posts {
            let choice = planned(&p.id).or_else(|| {
                let plan = self.run.plan(&Dialogue::from_message(p.text.clone()));
                let score = |m: &str| {
                    plan.modalities
                        .iter()
                        .find(|c| c.id == m)
                        .map_or(0.0, |c| c.score)
                };
                ids.iter()
                    .enumerate()
                    .min_by(|(ia, a), (ib, b)| {
                        used[a.as_str()]
                            .cmp(&used[b.as_str()])
                            .then(score(b).total_cmp(&score(a)))
                            .then(ia.cmp(ib))
                    })
                    .map(|(_, m)| m.clone())
            });
            if let Some(m) = &choice {
                if let Some(n) = used.get_mut(m.as_str()) {
                    *n += 1;
                }
            }
            out.push(choice);
        }
        out
    }
}

/// One stage's teacher and settings.
struct StageRun {
    stage: StageId,
    teacher: Teacher,
    template: String,
    max_tokens: usize,
}

struct Ctx<'a> {
    synth: &'a ResolvedSynth,
    planners: &'a Planners,
    posts: &'a [Post],
    modality: Vec<Option<String>>,
    stores: HashMap<StageId, Mutex<Store>>,
    records: Mutex<Store>,
    failures: Mutex<FailureLog>,
    progress: bool,
}

/// `psy synth M`: runs (or resumes) every stage and writes `report.json`.
pub fn synthesize(opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    let synth = load_synth(&opts.manifest)?;
    let dir = output_dir(&synth, opts.output.as_deref());
    let posts = read_posts(&synth.input, &synth.manifest.input)?;
    for line in posts.skipped_lines() {
        eprintln!("skipped {line}");
    }
    prepare_dir(&dir, &synth, opts.resume)?;
    let planners = Planners::build(&synth)?;
    let budget = Arc::new(Budget::new(synth.manifest.synth.token_budget));
    let mut teachers = Teachers::new(budget.clone());
    let mut stage_runs = Vec::new();
    for stage in StageId::ALL {
        let spec = synth.manifest.stages.get(stage);
        let teacher = teachers
            .build(stage.as_str(), synth.teacher(stage))
            .map_err(|message| SynthError::Teacher {
                stage: stage.as_str().into(),
                message,
            })?;
        stage_runs.push(StageRun {
            stage,
            teacher,
            template: spec.template_or_default(stage).to_string(),
            max_tokens: spec.max_tokens,
        });
    }
    let limit = match synth.manifest.synth.max_posts {
        0 => posts.posts.len(),
        n => n.min(posts.posts.len()),
    };
    let used = &posts.posts[..limit];
    let mut stores = HashMap::new();
    for (stage, file) in STAGE_FILES {
        stores.insert(stage, Mutex::new(Store::open(&dir.join(file))?));
    }
    let modality = {
        let plan_store = stores[&StageId::Plan].lock().unwrap();
        planners.assign(used, &|id| {
            plan_store
                .get(id)
                .and_then(|v| v.get("modality"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };
    let ctx = Ctx {
        synth: &synth,
        planners: &planners,
        posts: used,
        modality,
        stores,
        records: Mutex::new(Store::open(&dir.join(RECORDS_FILE))?),
        failures: Mutex::new(FailureLog::open(&dir.join(FAILURES_FILE))?),
        progress: opts.progress,
    };
    for run in &stage_runs {
        ctx.run_stage(run)?;
    }
    ctx.write_kept_records()?;
    let teacher_ids: BTreeMap<String, String> = stage_runs
        .iter()
        .map(|r| (r.stage.as_str().to_string(), r.teacher.id().to_string()))
        .collect();
    let report = SynthReport::collect(
        &dir,
        &synth,
        &posts,
        limit,
        &teacher_ids,
        (budget.reported(), budget.estimated()),
    )?;
    write_report(&dir, &report)?;
    Ok(report)
}

/// Creates the output directory, refusing one that holds another run (or, with `--resume`, a
/// run of other inputs).
fn prepare_dir(dir: &Path, synth: &ResolvedSynth, resume: bool) -> Result<(), SynthError> {
    let io = |e: std::io::Error| SynthError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let inputs = json!({
        "manifest_sha256": sha256_file(&synth.path)?,
        "posts_sha256": sha256_file(&synth.input)?,
    });
    let path = dir.join(INPUTS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(old) => {
            if !resume {
                return Err(SynthError::OutputExists {
                    dir: dir.to_path_buf(),
                });
            }
            let old: Value = serde_json::from_str(&old).map_err(|e| SynthError::Io {
                path: path.clone(),
                message: format!("not JSON: {e}"),
            })?;
            for key in ["manifest_sha256", "posts_sha256"] {
                if old.get(key) != inputs.get(key) {
                    return Err(SynthError::InputsChanged {
                        dir: dir.to_path_buf(),
                        what: key.trim_end_matches("_sha256").into(),
                    });
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let any = std::fs::read_dir(dir).map_err(io)?.next().is_some();
            if any && !resume {
                return Err(SynthError::OutputExists {
                    dir: dir.to_path_buf(),
                });
            }
            std::fs::write(&path, serde_json::to_string_pretty(&inputs).unwrap()).map_err(|e| {
                SynthError::Io {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })
        }
        Err(e) => Err(SynthError::Io {
            path,
            message: e.to_string(),
        }),
    }
}

pub fn sha256_file(path: &Path) -> Result<String, SynthError> {
    let data = std::fs::read(path).map_err(|e| SynthError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(format!("{:x}", Sha256::digest(&data)))
}

/// Seed of one call: the manifest's seed, the post, the stage and the round.
fn call_seed(base: u64, post: &str, stage: StageId, round: usize) -> u64 {
    base.wrapping_add(fnv1a64(post))
        .wrapping_add((stage.number() * 1000 + round) as u64)
}

impl Ctx<'_> {
    fn store(&self, stage: StageId) -> std::sync::MutexGuard<'_, Store> {
        self.stores[&stage]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, stage: StageId, key: &str) -> Option<Value> {
        self.store(stage).get(key).cloned()
    }

    fn save(&self, stage: StageId, key: &str, value: Value) -> Result<(), SynthError> {
        self.store(stage).append(key, value).map(|_| ())
    }

    fn fail(&self, stage: StageId, key: &str, error: &AskError) -> Result<(), SynthError> {
        tracing::info!(stage = stage.as_str(), key, %error, "synth call failed");
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).log(
            stage,
            key,
            error.reason(),
            &error.to_string(),
        )
    }

    /// The posts this stage still has to do (their inputs exist, their output does not).
    fn pending(&self, stage: StageId) -> Vec<usize> {
        (0..self.posts.len())
            .filter(|&i| {
                let id = &self.posts[i].id;
                let input_ready = match stage {
                    StageId::Plan => true,
                    StageId::Client => self.get(StageId::Plan, id).is_some(),
                    StageId::Counselor => self.get(StageId::Client, id).is_some(),
                    StageId::Filter => self.rounds_done(i).is_some(),
                };
                let done = match stage {
                    StageId::Counselor => self.rounds_done(i).is_some(),
                    s => self.get(s, id).is_some(),
                };
                input_ready && !done
            })
            .collect()
    }

    /// The rounds of post `i` when every one of them is written.
    fn rounds_done(&self, i: usize) -> Option<Vec<Value>> {
        let id = &self.posts[i].id;
        let client = self.get(StageId::Client, id)?;
        let n = client.get("patient")?.as_array()?.len();
        let store = self.store(StageId::Counselor);
        (1..=n)
            .map(|r| store.get(&round_key(id, r)).cloned())
            .collect()
    }

    fn run_stage(&self, run: &StageRun) -> Result<(), SynthError> {
        let pending = self.pending(run.stage);
        let bar = if self.progress {
            let b = ProgressBar::new(pending.len() as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(run.stage.as_str());
            b
        } else {
            ProgressBar::hidden()
        };
        let next = AtomicUsize::new(0);
        let error: Mutex<Option<SynthError>> = Mutex::new(None);
        let workers = self
            .synth
            .manifest
            .synth
            .concurrency
            .min(pending.len())
            .max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = pending.get(k) else { break };
                    if error.lock().unwrap().is_some() {
                        break;
                    }
                    if let Err(e) = self.do_post(run, i) {
                        error.lock().unwrap().get_or_insert(e);
                        break;
                    }
                    bar.inc(1);
                });
            }
        });
        bar.finish_and_clear();
        match error.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One post through one stage. Teacher failures are logged and counted, not fatal; only
    /// writing the output can fail the run.
    fn do_post(&self, run: &StageRun, i: usize) -> Result<(), SynthError> {
        match run.stage {
            StageId::Plan => self.plan_post(run, i),
            StageId::Client => self.client_post(run, i),
            StageId::Counselor => self.counselor_post(run, i),
            StageId::Filter => self.filter_post(run, i),
        }
    }

    fn planner(&self, i: usize) -> &Planner {
        self.planners.for_modality(self.modality[i].as_deref())
    }

    fn plan_post(&self, run: &StageRun, i: usize) -> Result<(), SynthError> {
        let post = &self.posts[i];
        let s = &self.synth.manifest.synth;
        let plan = self
            .planner(i)
            .plan(&Dialogue::from_message(post.text.clone()));
        let prompt =
            prompts::plan_prompt(&run.template, &post.text, s.min_rounds, s.max_rounds, &plan);
        let (min, max) = (s.min_rounds, s.max_rounds);
        let asked = run.teacher.ask(
            "plan",
            &post.id,
            vec![ChatMessage::user(prompt)],
            schemas::plan_schema(min, max),
            run.max_tokens,
            call_seed(s.seed, &post.id, run.stage, 0),
            &|v| schemas::check_plan(v, min, max),
        );
        match asked {
            Ok(a) => self.save(
                StageId::Plan,
                &post.id,
                json!({
                    "post_id": post.id,
                    "scene": a.value.scene,
                    "focuses": a.value.rounds,
                    "modality": self.modality[i],
                    "post_risk": plan.risk.level.as_str(),
                    "post_intensity": plan.constraints.intensity,
                    "post_hypotheses": plan.hypotheses.iter().map(|h| &h.id).collect::<Vec<_>>(),
                    "attempts": a.attempts,
                }),
            ),
            Err(e) => self.fail(StageId::Plan, &post.id, &e),
        }
    }

    fn client_post(&self, run: &StageRun, i: usize) -> Result<(), SynthError> {
        let post = &self.posts[i];
        let planned = self.get(StageId::Plan, &post.id).unwrap_or_default();
        let focuses = strings(&planned["focuses"]);
        let plan = self
            .planner(i)
            .plan(&Dialogue::from_message(post.text.clone()));
        let prompt = prompts::client_prompt(&run.template, &post.text, &focuses, &plan);
        let n = focuses.len();
        let asked = run.teacher.ask(
            "client",
            &post.id,
            vec![ChatMessage::user(prompt)],
            schemas::client_schema(n),
            run.max_tokens,
            call_seed(self.synth.manifest.synth.seed, &post.id, run.stage, 0),
            &|v| schemas::check_client(v, n),
        );
        match asked {
            Ok(a) => self.save(
                StageId::Client,
                &post.id,
                json!({"post_id": post.id, "patient": a.value.turns, "attempts": a.attempts}),
            ),
            Err(e) => self.fail(StageId::Client, &post.id, &e),
        }
    }

    /// Rounds in order: round r is asked with rounds 1..r-1 (as written) before it, and a round
    /// that fails stops the post (a later round needs its history).
    fn counselor_post(&self, run: &StageRun, i: usize) -> Result<(), SynthError> {
        let post = &self.posts[i];
        let focuses = strings(&self.get(StageId::Plan, &post.id).unwrap_or_default()["focuses"]);
        let patient = strings(&self.get(StageId::Client, &post.id).unwrap_or_default()["patient"]);
        let mut history: Vec<Round> = Vec::new();
        for (r, turn) in patient.iter().enumerate() {
            let round = r + 1;
            let key = round_key(&post.id, round);
            if let Some(done) = self.get(StageId::Counselor, &key) {
                history.push(round_of(&done));
                continue;
            }
            let dialogue = dialogue_of(&history, turn);
            let plan = self.planner(i).plan(&dialogue);
            let focus = focuses.get(r).map(String::as_str).unwrap_or("");
            let system = prompts::counselor_prompt(&run.template, &plan, focus);
            let mut messages = vec![ChatMessage::system(system)];
            for h in &history {
                messages.push(ChatMessage::user(h.patient.clone()));
                messages.push(ChatMessage::assistant(h.reply.clone()));
            }
            messages.push(ChatMessage::user(turn.clone()));
            let asked = run.teacher.ask(
                "counselor",
                &key,
                messages,
                schemas::counselor_schema(),
                run.max_tokens,
                call_seed(self.synth.manifest.synth.seed, &post.id, run.stage, round),
                &schemas::check_counselor,
            );
            let a = match asked {
                Ok(a) => a,
                Err(e) => return self.fail(StageId::Counselor, &key, &e),
            };
            // A reasoning model's own reasoning (`reasoning_content`) is the trace when present.
            let think = match split_inline_trace(&a.raw).0 {
                Some(r) if !r.trim().is_empty() => r,
                _ => a.value.think.trim().to_string(),
            };
            let reply = a.value.reply.trim().to_string();
            self.save(
                StageId::Counselor,
                &key,
                json!({
                    "post_id": post.id,
                    "round": round,
                    "patient": turn,
                    "counselor_think": think,
                    "counselor_content": reply,
                    "plan": prompts::plan_metadata(&plan),
                    "attempts": a.attempts,
                }),
            )?;
            history.push(Round {
                patient: turn.clone(),
                think,
                reply,
            });
        }
        Ok(())
    }

    /// The judge's verdict on the four criteria plus the modules' own filters (a label said to
    /// the client, a required part such as the crisis protocol missing), replanned per round.
    fn filter_post(&self, run: &StageRun, i: usize) -> Result<(), SynthError> {
        let post = &self.posts[i];
        let Some(done) = self.rounds_done(i) else {
            return Ok(());
        };
        let rounds: Vec<Round> = done.iter().map(round_of).collect();
        let mut module_issues = Vec::new();
        let mut modalities: Vec<String> = Vec::new();
        for (r, round) in rounds.iter().enumerate() {
            let plan = self
                .planner(i)
                .plan(&dialogue_of(&rounds[..r], &round.patient));
            for m in prompts::chosen_modalities(&plan) {
                if !modalities.contains(&m) {
                    modalities.push(m);
                }
            }
            module_issues.extend(module_filter(&plan, &round.reply, r + 1));
        }
        let prompt = prompts::filter_prompt(&run.template, &rounds, &modalities);
        let asked = run.teacher.ask(
            "filter",
            &post.id,
            vec![ChatMessage::user(prompt)],
            schemas::verdict_schema(),
            run.max_tokens,
            call_seed(self.synth.manifest.synth.seed, &post.id, run.stage, 0),
            &schemas::check_verdict,
        );
        let verdict = match asked {
            Ok(a) => a.value,
            Err(e) => return self.fail(StageId::Filter, &post.id, &e),
        };
        // Conservative: a verdict that keeps the sample while listing issues drops it.
        let keep = verdict.keep && verdict.issues.is_empty() && module_issues.is_empty();
        self.save(
            StageId::Filter,
            &post.id,
            json!({
                "post_id": post.id,
                "keep": keep,
                "judge": verdict,
                "module_issues": module_issues,
            }),
        )?;
        if keep {
            self.write_record(i)?;
        }
        Ok(())
    }

    /// Kept conversations whose record line is missing (a kill between the verdict and the
    /// record) are written now.
    fn write_kept_records(&self) -> Result<(), SynthError> {
        for i in 0..self.posts.len() {
            let kept = self
                .get(StageId::Filter, &self.posts[i].id)
                .is_some_and(|v| v["keep"] == Value::Bool(true));
            if kept {
                self.write_record(i)?;
            }
        }
        Ok(())
    }

    fn write_record(&self, i: usize) -> Result<(), SynthError> {
        let post = &self.posts[i];
        let Some(rounds) = self.rounds_done(i) else {
            return Ok(());
        };
        let planned = self.get(StageId::Plan, &post.id).unwrap_or_default();
        let conversation: Vec<Value> = rounds
            .iter()
            .map(|r| {
                json!({
                    "round": r["round"],
                    "patient": r["patient"],
                    "counselor_think": r["counselor_think"],
                    "counselor_content": r["counselor_content"],
                    "plan": r["plan"],
                })
            })
            .collect();
        let record = json!({
            "post_id": post.id,
            "scene": planned["scene"],
            "synthetic": true,
            "conversation": conversation,
        });
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&post.id, record)
            .map(|_| ())
    }
}

/// The modules' training filters on one reply.
pub fn module_filter(plan: &Plan, reply: &str, round: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let labels = reply_rules::forbidden_labels(&plan.constraints, reply);
    if !labels.is_empty() {
        out.push(json!({"round": round, "issue": "label_to_client", "detail": labels.join(", ")}));
    }
    for (rule, _) in reply_rules::missing_required(&plan.constraints, reply) {
        let issue = if plan.constraints.crisis_protocol_required {
            "crisis_protocol_missing"
        } else {
            "required_part_missing"
        };
        out.push(json!({"round": round, "issue": issue, "detail": rule}));
    }
    out
}

pub fn round_key(post: &str, round: usize) -> String {
    format!("{post}#{round}")
}

fn round_of(v: &Value) -> Round {
    Round {
        patient: v["patient"].as_str().unwrap_or_default().to_string(),
        think: v["counselor_think"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        reply: v["counselor_content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The dialogue up to and including the client's `turn`, earlier rounds in order.
fn dialogue_of(history: &[Round], turn: &str) -> Dialogue {
    let mut messages = Vec::new();
    for h in history {
        messages.push(Message::user(h.patient.clone()));
        messages.push(Message::assistant(h.reply.clone()));
    }
    messages.push(Message::user(turn.to_string()));
    Dialogue::new(messages)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The posts a manifest reads (for `--dry-run`).
pub fn read_manifest_posts(synth: &ResolvedSynth) -> Result<PostSet, SynthError> {
    read_posts(&synth.input, &synth.manifest.input)
}
