//! The two commands: `psy eval M` (one run) and `psy ablate A` (a cell per variant), each
//! decoding, judging and writing the report into its run directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use psy_core::eval_spec::EvalSection;
use psy_core::manifest::{self, ResolvedRun, SourceFile};
use psy_eval::judge::Judge;
use psy_eval::report::{write_report, ItemCounts, Report};
use psy_eval::rubric::Rubric;
use psy_eval::stats::Bootstrap;
use psy_lm::session::{Counselor, EngineDrafter};

use super::cell::{self, REPLIES};
use super::cell_store::CellStore;
use super::items::{self, EvalData};
use super::judging::{self, RubricSet};
use super::provenance::{code_identity, sha256_hex, sha256_path};
use super::summarize::{self, CellScores};
use super::variant_train::{self, ResolvedTrain};

/// One finished cell: its scores and the rubrics it was judged with.
type CellResult = Result<(CellScores, Vec<Rubric>)>;

/// Options shared by `psy eval` and `psy ablate`.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Run directory (default `runs/eval-<run>` or `runs/ablate-<ablation>`).
    pub output: Option<PathBuf>,
    /// Judge afresh instead of reading the judge cache (the cache is still written).
    pub no_cache: bool,
    /// Cells decoded at once (each loads its own model).
    pub jobs: usize,
    /// Decode with this model instead of each run's.
    pub model: Option<PathBuf>,
    /// Items of a cell answered at once on one batch engine (`Some(1)`: one after another on
    /// it); `None` answers them one after another with the cell's own model and its prompt
    /// cache. Cells that train an adapter decode that way whatever this says.
    pub max_batch: Option<usize>,
}

/// What a finished run wrote.
pub struct EvalOutcome {
    pub dir: PathBuf,
    pub report: Report,
    /// `report.md`, for printing.
    pub markdown: String,
}

struct CellSpec {
    name: String,
    description: String,
    run: ResolvedRun,
    /// `[variants.train]`: an adapter to train before decoding.
    train: Option<ResolvedTrain>,
}

/// `psy eval M`: the run's `[eval]` on the run itself.
pub fn eval_run(manifest_path: &Path, opts: &EvalOptions) -> Result<EvalOutcome> {
    let run = manifest::load_run(manifest_path)?;
    let name = run.manifest.run.name.clone();
    let cells = vec![CellSpec {
        name: name.clone(),
        description: run.manifest.run.description.clone(),
        run,
        train: None,
    }];
    let dir = opts
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/eval-{name}")));
    execute(&name, manifest_path, cells, opts, &dir)
}

/// `psy ablate A`: every variant of the ablation as a cell, scored on the base run's
/// `[eval]`; the first variant is the base of the differences.
pub fn ablate(path: &Path, opts: &EvalOptions) -> Result<EvalOutcome> {
    let ab = manifest::load_ablation(path)?;
    let base_eval = &ab.base.manifest.eval;
    let file = SourceFile {
        path: path.to_path_buf(),
        text: std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?,
    };
    let base_path = PathBuf::from(ab.base.origin());
    let mut cells = Vec::new();
    for ((name, run), v) in ab.variants.into_iter().zip(&ab.manifest.variants) {
        let train = match &v.train {
            Some(t) => {
                let t = variant_train::resolve(t, &name, &file, &base_path)?;
                let decoded = match &opts.model {
                    Some(m) => m.clone(),
                    None => crate::run_model(&run)?,
                };
                t.check_base_model(&name, &decoded)?;
                Some(t)
            }
            None => None,
        };
        if &run.manifest.eval != base_eval {
            bail!(
                "{}: variant `{name}` changes [eval]: every cell is scored on the same items \
                 with the same judge, so [eval] belongs to the base run",
                path.display()
            );
        }
        cells.push(CellSpec {
            name,
            description: v.description.clone(),
            run,
            train,
        });
    }
    if cells.is_empty() {
        bail!("{}: the ablation has no variants", path.display());
    }
    let name = ab.manifest.ablation.name.clone();
    let dir = opts
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/ablate-{name}")));
    execute(&name, &base_path, cells, opts, &dir)
}

fn execute(
    name: &str,
    base_manifest: &Path,
    cells: Vec<CellSpec>,
    opts: &EvalOptions,
    dir: &Path,
) -> Result<EvalOutcome> {
    let section: EvalSection = cells[0].run.manifest.eval.clone();
    let origin = cells[0].run.origin();
    let data = items::load(&section, &origin)?;
    let judge = judging::judge_of(&section.judge, opts.no_cache)?;
    let manifest_dir = base_manifest
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    eprintln!(
        "{}: {} items from {} ({} unreadable lines), {} cell(s), judge: {}",
        name,
        data.items.len(),
        items::shown(&data.path),
        data.bad.len(),
        cells.len(),
        judge.as_ref().map_or("none", |j| j.backend_id())
    );
    let bars = MultiProgress::new();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CellResult>>> =
        Mutex::new((0..cells.len()).map(|_| None).collect());
    let model_hashes: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let ctx = CellContext {
        section: &section,
        data: &data,
        judge: judge.as_ref(),
        manifest_dir: &manifest_dir,
        dir,
        opts,
        bars: &bars,
        model_hashes: &model_hashes,
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, cells.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(cell) = cells.get(i) else { break };
                let r = run_cell(&ctx, cell);
                let failed = r.is_err();
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                if failed {
                    // Stop handing out cells; the ones running finish and keep their results.
                    next.store(cells.len(), Ordering::SeqCst);
                }
            });
        }
    });
    let mut scored = Vec::new();
    let mut rubrics: Vec<Rubric> = Vec::new();
    for r in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let Some(r) = r else {
            bail!("a cell failed before this one started; rerun to resume")
        };
        let (cell, rs) = r?;
        for rb in rs {
            if !rubrics.iter().any(|x| x.id == rb.id) {
                rubrics.push(rb);
            }
        }
        scored.push(cell);
    }
    let refs: Vec<&Rubric> = rubrics.iter().collect();
    let bootstrap = Bootstrap {
        seed: section.seed,
        ..Bootstrap::default()
    };
    let report = summarize::report(name, &scored, &refs, &bootstrap)?;
    write_report(dir, &report)?;
    let markdown = std::fs::read_to_string(dir.join("report.md"))
        .with_context(|| format!("{}: cannot read back", dir.join("report.md").display()))?;
    Ok(EvalOutcome {
        dir: dir.to_path_buf(),
        report,
        markdown,
    })
}

struct CellContext<'a> {
    section: &'a EvalSection,
    data: &'a EvalData,
    judge: Option<&'a Judge>,
    manifest_dir: &'a Path,
    dir: &'a Path,
    opts: &'a EvalOptions,
    bars: &'a MultiProgress,
    model_hashes: &'a Mutex<BTreeMap<PathBuf, String>>,
}

fn model_hash(ctx: &CellContext, path: &Path) -> Result<String> {
    if let Some(h) = ctx
        .model_hashes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
    {
        return Ok(h.clone());
    }
    let h = sha256_path(path)?;
    ctx.model_hashes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), h.clone());
    Ok(h)
}

fn bar(ctx: &CellContext, name: &str, what: &str, len: usize) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{prefix:>18} {msg:8} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let b = ctx.bars.add(ProgressBar::new(len as u64));
    b.set_style(style);
    b.set_prefix(name.to_string());
    b.set_message(what.to_string());
    b
}

fn run_cell(ctx: &CellContext, cell: &CellSpec) -> Result<(CellScores, Vec<Rubric>)> {
    let started = Instant::now();
    let model_path = match &ctx.opts.model {
        Some(m) => m.clone(),
        None => crate::run_model(&cell.run)?,
    };
    let planner = crate::planner_for_run(cell.run.clone())?;
    let rubrics = RubricSet::load(ctx.section, ctx.manifest_dir, &planner)?;
    let resolved = toml::to_string(&cell.run.manifest)?;
    let mut inputs = BTreeMap::from([
        (
            "manifest_sha256".to_string(),
            sha256_hex(resolved.as_bytes()),
        ),
        ("model_sha256".to_string(), model_hash(ctx, &model_path)?),
        ("eval_data_sha256".to_string(), ctx.data.sha256.clone()),
        (
            "protocol".to_string(),
            format!("{:?}", ctx.section.protocol).to_lowercase(),
        ),
        ("items".to_string(), ctx.data.items.len().to_string()),
    ]);
    if let Some(j) = ctx.judge {
        inputs.insert("judge".to_string(), j.backend_id().to_string());
        inputs.insert(
            "rubrics_sha256".to_string(),
            sha256_hex(rubrics.identity().as_bytes()),
        );
        let prompts: Vec<String> = rubrics.all().map(|r| r.judge_system_prompt()).collect();
        inputs.insert(
            "judge_prompt_sha256".to_string(),
            sha256_hex(prompts.join("\n").as_bytes()),
        );
    }
    // A variant that trains does so first: its adapter's hash is one of the cell's inputs.
    let adapter = match &cell.train {
        Some(t) => {
            let cell_dir = ctx.dir.join("cells").join(&cell.name);
            let a = variant_train::train_cell(&cell_dir, &cell.name, t)?;
            inputs.extend(a.provenance.clone());
            Some(a.dir)
        }
        None => None,
    };
    let store = CellStore::open(ctx.dir, &cell.name, &inputs)?;
    let records = if store.is_done() {
        eprintln!("{}: decoded earlier, reusing {}", cell.name, REPLIES);
        store.read(REPLIES)?
    } else {
        let b = bar(ctx, &cell.name, "decode", ctx.data.items.len());
        let tok = cell.run.manifest.model.tokenizer.trim();
        let tok = (!tok.is_empty()).then(|| Path::new(tok));
        let dir = cell.run.manifest.assessment.encoder.trim();
        let encoder = psy_lm::encoder::shared((!dir.is_empty()).then(|| Path::new(dir)))?;
        let records = if let (Some(batch), None) = (ctx.opts.max_batch, &adapter) {
            let batch = batch.max(1);
            drop(planner);
            let drafter = EngineDrafter::load(&model_path, tok, batch)
                .with_context(|| format!("loading model {}", model_path.display()))?;
            let counselors = (0..batch)
                .map(|_| {
                    let planner = crate::planner_for_run(cell.run.clone())?;
                    Ok(Counselor::new(planner, Box::new(drafter.clone())))
                })
                .collect::<Result<Vec<_>>>()?;
            cell::decode_batched(&store, counselors, Some(&encoder), ctx.data, &|| b.inc(1))?
        } else {
            let mut counselor = match &adapter {
                Some(a) => variant_train::adapted_counselor(planner, &model_path, tok, a)?,
                None => crate::counselor_with(planner, &model_path, tok)?,
            };
            cell::decode(
                &store,
                &mut counselor,
                Some(&encoder),
                ctx.data,
                &mut || b.inc(1),
            )?
        };
        b.finish();
        store.mark_done()?;
        records
    };
    let mut items = ItemCounts {
        scored: records.len(),
        ..ItemCounts::default()
    };
    for bad in &ctx.data.bad {
        *items
            .failed
            .entry("unreadable eval line".into())
            .or_default() += 1;
        items.failures.push(bad.to_string());
    }
    let mut values: BTreeMap<String, BTreeMap<String, f64>> = records
        .iter()
        .map(|r| (r.key.clone(), r.measures.clone()))
        .collect();
    if let Some(judge) = ctx.judge {
        let total = records
            .iter()
            .map(|x| rubrics.for_item(x).len())
            .sum::<usize>()
            * ctx.section.repeats.max(1) as usize;
        let b = bar(ctx, &cell.name, "judge", total);
        let j = judging::judge_cell(
            judge,
            &ctx.section.judge,
            ctx.section.repeats,
            &rubrics,
            &records,
            &store,
            &mut |_| b.inc(1),
        )?;
        b.finish();
        for (k, m) in j.scores {
            values.entry(k).or_default().extend(m);
        }
        for (reason, n) in j.failed {
            *items.failed.entry(reason).or_default() += n;
        }
        items.failures.extend(j.failures);
    }
    let mut provenance = inputs;
    provenance.extend(code_identity());
    eprintln!(
        "{}: {} items in {:.1} s",
        cell.name,
        records.len(),
        started.elapsed().as_secs_f64()
    );
    let all: Vec<Rubric> = rubrics.all().cloned().collect();
    Ok((
        CellScores {
            name: cell.name.clone(),
            description: cell.description.clone(),
            provenance,
            items,
            values,
            replies: records.into_iter().map(|r| (r.key, r.reply)).collect(),
        },
        all,
    ))
}
