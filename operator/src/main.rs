//! `vigil-operator`: prints the CRDs, validates and renders manifests offline, and runs the live
//! operator in a cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_operator::render::alertmanager::AlertmanagerVersion;
use vigil_operator::{bundle, controllers, manifests, run};

/// mimalloc: the webhook's JSON reading and the watch caches allocate many small objects; it
/// halves the `/mutate-pods` handler time against the system allocator (`webhook` benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The platform's own `alertmanager.yml`: Vigil's routes and receivers are merged into
        /// it, and it keeps its SMTP relay, root route, receivers and templates. Without it the
        /// file has a no-op root receiver and no SMTP relay (e-mail receivers need one).
        #[arg(long, value_name = "FILE")]
        alertmanager_base_config: Option<PathBuf>,
    },
    /// Run the operator in a cluster: leader election, and the controllers on the leader.
    Run(Box<RunArgs>),
}

/// Flags of `vigil-operator run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file; default: the in-cluster configuration, else `KUBECONFIG` or
    /// `~/.kube/config`.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Watch and write in this namespace only (default: the whole cluster).
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the operator itself: the leader-election Lease and the shared
    /// `vigil-alertmanager` Secret live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vigil-system")]
    operator_namespace: String,
    /// This replica's identity in leader election and Events.
    #[arg(long, env = "POD_NAME", default_value = "vigil-operator")]
    identity: String,
    /// Lease validity in seconds; the leader renews every third of it.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration_seconds: u64,
    /// Agent image injected when a MonitoredApp names none.
    #[arg(long, default_value = controllers::DEFAULT_AGENT_IMAGE)]
    agent_image: String,
    /// How the agent is injected: `auto` reads the API server's version and injects a native
    /// sidecar (init container with `restartPolicy: Always`) where it is served (1.29+) and a
    /// regular container elsewhere; `true` and `false` force one mode (`true` on a 1.28 cluster
    /// with the `SidecarContainers` feature gate on).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "true", "false"])]
    native_sidecar: String,
    /// Old spelling of `--native-sidecar=false`.
    #[arg(long, hide = true)]
    no_native_sidecar: bool,
    /// Seconds a terminating replica keeps serving admission requests after SIGTERM while
    /// `/readyz` fails, so the API server stops sending it calls (endpoint propagation) before
    /// it exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    shutdown_drain_seconds: u64,
    /// Alertmanager release the shared `alertmanager.yml` targets.
    #[arg(long, value_name = "VERSION", default_value = "0.26", value_parser = ["0.25", "0.26"])]
    alertmanager_version: String,
    /// The platform's own `alertmanager.yml` (for example mounted from a ConfigMap): the
    /// shared `alertmanager.yml` merges Vigil's routes and receivers into it and keeps its SMTP
    /// relay, root route, receivers and templates.
    #[arg(long, value_name = "FILE")]
    alertmanager_base_config: Option<PathBuf>,
    /// Base URL of a plain Prometheus to reload (`POST /-/reload`) after its shared files change.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    /// Base URL of a plain Alertmanager to reload after `alertmanager.yml` changes.
    /// Also polled for silences, which acknowledge alerts and stop their escalation.
    #[arg(long, value_name = "URL")]
    alertmanager_url: Option<String>,
    /// Seconds between a change of a mounted file and its reload (the kubelet's sync delay).
    #[arg(long, default_value_t = 90)]
    reload_delay_seconds: u64,
    /// Address of the operator's own `/metrics`, `/healthz` and `/readyz` (plain HTTP).
    #[arg(long, value_name = "ADDRESS", default_value = vigil_operator::telemetry::DEFAULT_LISTEN)]
    metrics_listen: std::net::SocketAddr,
    #[command(flatten)]
    webhook: vigil_operator::webhook::WebhookArgs,
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
            alertmanager_base_config,
        } => {
            let alertmanager_base = match alertmanager_base_config.map(read_base_config) {
                None => None,
                Some(Ok(text)) => Some(text),
                Some(Err(code)) => return code,
            };
            let options = bundle::Options {
                alertmanager: alertmanager_version_of(&alertmanager_version),
                alertmanager_base,
            };
            render(&files, &output, options)
        }
        Command::Run(args) => run_operator(*args),
    }
}

/// The text of the base `alertmanager.yml` at `path`, or the exit code after saying why it
/// cannot be read.
fn read_base_config(path: PathBuf) -> Result<String, ExitCode> {
    std::fs::read_to_string(&path).map_err(|e| {
        eprintln!(
            "vigil-operator: cannot read the base Alertmanager configuration {}: {e}",
            path.display()
        );
        ExitCode::FAILURE
    })
}

fn alertmanager_version_of(text: &str) -> AlertmanagerVersion {
    match text {
        "0.25" => AlertmanagerVersion::V0_25,
        _ => AlertmanagerVersion::V0_26,
    }
}

fn run_operator(args: RunArgs) -> ExitCode {
    let alertmanager_base = match args.alertmanager_base_config.clone().map(read_base_config) {
        None => None,
        Some(Ok(text)) => Some(text),
        Some(Err(code)) => return code,
    };
    if let Some(base) = &alertmanager_base {
        let empty = vigil_operator::render::alertmanager::alertmanager_config(
            &vigil_operator::render::Inventory::default(),
        );
        if let Err(e) = vigil_operator::render::alertmanager::merge_into_base(&empty, base) {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            eprintln!("vigil-operator: {e}{cause}");
            return ExitCode::FAILURE;
        }
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = run::RunOptions {
        kubeconfig: args.kubeconfig,
        settings: controllers::Settings {
            agent_image: args.agent_image,
            alertmanager_version: alertmanager_version_of(&args.alertmanager_version),
            alertmanager_namespace: args.operator_namespace.clone(),
            alertmanager_base,
            namespace: args.namespace,
            ..controllers::Settings::default()
        },
        identity: args.identity,
        lease_namespace: args.operator_namespace,
        lease_name: "vigil-operator".to_owned(),
        lease_duration: std::time::Duration::from_secs(args.lease_duration_seconds),
        prometheus_url: args.prometheus_url,
        alertmanager_url: args.alertmanager_url,
        reload_delay: std::time::Duration::from_secs(args.reload_delay_seconds),
        metrics_listen: args.metrics_listen,
        webhook: args.webhook,
        native_sidecar: match (args.no_native_sidecar, args.native_sidecar.as_str()) {
            (true, _) | (false, "false") => run::NativeSidecar::Never,
            (false, "true") => run::NativeSidecar::Always,
            _ => run::NativeSidecar::Auto,
        },
        shutdown_drain: std::time::Duration::from_secs(args.shutdown_drain_seconds),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vigil-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("vigil-operator: {message}");
            ExitCode::FAILURE
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
    let standalone = options.alertmanager_base.is_none();
    let rendered = match bundle::render(&loaded.inventory, options) {
        Ok(rendered) => rendered,
        Err(e) => {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            eprintln!("vigil-operator: {e}{cause}");
            return ExitCode::FAILURE;
        }
    };
    for skipped in &rendered.skipped {
        eprintln!("vigil-operator: left out {skipped}");
    }
    let has_email = rendered
        .files
        .get(Path::new("alertmanager/alertmanager.yml"))
        .is_some_and(|yml| String::from_utf8_lossy(yml).contains("email_configs:"));
    if standalone && has_email {
        eprintln!(
            "vigil-operator: note: alertmanager.yml has e-mail receivers but no SMTP relay; \
             pass --alertmanager-base-config with the platform's alertmanager.yml \
             (global.smtp_smarthost) or Alertmanager will refuse it"
        );
    }
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
