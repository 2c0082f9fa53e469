//! `psy`: parse arguments and call one library function per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "psy",
    version,
    about = "Clinically grounded counseling language models (a research tool, not a clinical device)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan the counselor's next reply: risk, hypotheses, modalities, reasoning steps, prompt.
    Plan {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        /// A single client message.
        #[arg(
            long,
            conflicts_with = "dialogue",
            required_unless_present = "dialogue"
        )]
        message: Option<String>,
        /// A dialogue: JSON array, {"messages": [...]}, or JSONL of {"role", "content"}.
        #[arg(long)]
        dialogue: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manifest tools.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Module (plugin) tools.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Validate a run or ablation manifest and print it resolved.
    Check { manifest: PathBuf },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List every module: id, kind, version, source.
    List {
        /// Also load the plugins this run manifest lists.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also load this module manifest or plugin library (repeatable).
        #[arg(long = "plugin")]
        plugins: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan {
            manifest,
            message,
            dialogue,
            json,
        } => {
            let plan = psy::plan(&manifest, message.as_deref(), dialogue.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_text());
            }
        }
        Command::Manifest {
            command: ManifestCommand::Check { manifest },
        } => {
            print!("{}", psy::check_manifest(&manifest)?);
            eprintln!("ok: {}", manifest.display());
        }
        Command::Plugins {
            command:
                PluginsCommand::List {
                    manifest,
                    plugins,
                    json,
                },
        } => {
            let rows = psy::list_plugins(manifest.as_deref(), &plugins)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<24} {:<11} {:<8} SOURCE", "ID", "KIND", "VERSION");
                for r in rows {
                    println!("{:<24} {:<11} {:<8} {}", r.id, r.kind, r.version, r.source);
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PSY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
