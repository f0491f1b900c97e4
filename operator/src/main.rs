//! `vigil-operator`: prints the CRDs, validates and renders manifests offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_operator::render::alertmanager::AlertmanagerVersion;
use vigil_operator::{bundle, manifests};

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
        /// Alertmanager release the configuration targets: `0.26` and later read webhook URLs
        /// from files; `0.25` cannot, so webhook receivers get an unroutable placeholder URL.
        #[arg(long, value_name = "VERSION", default_value = "0.26", value_parser = ["0.25", "0.26"])]
        alertmanager_version: String,
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
        Command::Render {
            files,
            output,
            alertmanager_version,
        } => {
            let alertmanager = match alertmanager_version.as_str() {
                "0.25" => AlertmanagerVersion::V0_25,
                _ => AlertmanagerVersion::V0_26,
            };
            render(&files, &output, bundle::Options { alertmanager })
        }
    }
}

fn report(problems: &[manifests::Problem]) -> ExitCode {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s); nothing was written", problems.len());
    ExitCode::FAILURE
}

fn render(files: &[PathBuf], output: &Path, options: bundle::Options) -> ExitCode {
    let loaded = match manifests::load(files) {
        Ok(loaded) => loaded,
        Err(problems) => return report(&problems),
    };
    let rendered = match bundle::render(&loaded.inventory, options) {
        Ok(rendered) => rendered,
        Err(e) => {
            eprintln!("vigil-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = bundle::write(&rendered, output) {
        eprintln!("vigil-operator: cannot write {}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    let inv = &loaded.inventory;
    println!(
        "rendered {} MonitoredApp, {} AlertPolicy, {} SLO, {} DashboardView into {}:",
        inv.apps.len(),
        inv.policies.len(),
        inv.slos.len(),
        inv.views.len(),
        output.display()
    );
    for (path, bytes) in &rendered.files {
        println!("  {:<76} {:>7} bytes", path.display(), bytes.len());
    }
    if !loaded.skipped.is_empty() {
        println!(
            "skipped {} object(s) of other kinds: {}",
            loaded.skipped.len(),
            loaded.skipped.join(", ")
        );
    }
    ExitCode::SUCCESS
}
