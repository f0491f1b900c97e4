//! `vigil-operator`: prints the CRDs, validates and renders manifests offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_operator::manifests;

/// Vigil's Kubernetes operator and offline renderer.
#[derive(Parser, Debug)]
#[command(name = "vigil-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every Vigil CRD as multi-document YAML.
    Crd,
    /// Validate manifests without rendering; exits non-zero with one line per problem.
    Check {
        /// A manifest file or a directory searched recursively; repeatable.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
    },
    /// Render manifests into the files Prometheus, Alertmanager, Grafana, the agent and
    /// Kubernetes consume.
    Render {
        /// A manifest file or a directory searched recursively; repeatable.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Output directory; replaced as a whole only when rendering succeeds.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match vigil_crds::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vigil-operator: cannot encode the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { files } => match manifests::load(&files) {
            Ok(loaded) => {
                let inv = &loaded.inventory;
                println!(
                    "valid: {} MonitoredApp, {} AlertPolicy, {} SLO, {} DashboardView ({} other objects skipped)",
                    inv.apps.len(),
                    inv.policies.len(),
                    inv.slos.len(),
                    inv.views.len(),
                    loaded.skipped.len()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => report(&problems),
        },
        Command::Render { files, output } => render(&files, &output),
    }
}

fn report(problems: &[manifests::Problem]) -> ExitCode {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s); nothing was written", problems.len());
    ExitCode::FAILURE
}

fn render(files: &[PathBuf], _output: &std::path::Path) -> ExitCode {
    match manifests::load(files) {
        Ok(_) => ExitCode::SUCCESS,
        Err(problems) => report(&problems),
    }
}
