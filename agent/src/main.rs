//! `vigil-agent`: the per-pod sidecar. This build validates its configuration; the collection
//! pipeline (sources, processors, buffer, sinks) is built on top of it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vigil_crds::AgentConfig;

/// Vigil's sidecar agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Agent configuration file (rendered by the operator into a ConfigMap).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE and exit: 0 when valid, 1 with the offending field otherwise.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.check_config.or(cli.config) else {
        eprintln!("vigil-agent: pass --config FILE or --check-config FILE");
        return ExitCode::from(2);
    };
    let loaded = std::fs::read_to_string(&path)
        .map_err(anyhow::Error::from)
        .and_then(|text| AgentConfig::from_yaml(&text).map_err(anyhow::Error::from));
    match loaded {
        Ok(config) => {
            println!(
                "{}: valid agent config for {}/{}",
                path.display(),
                config.app.namespace,
                config.app.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
