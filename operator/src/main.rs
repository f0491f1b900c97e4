//! `vigil-operator`: prints the CRDs, validates and renders manifests offline, and runs the live
//! operator in a cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_operator::render::alertmanager::AlertmanagerVersion;
use vigil_operator::render::outputs::{self, OutputArgs};
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
        /// How long the target Prometheus keeps data, such as `15d`: an SLO whose window is
        /// longer gets a warning (its figures would only cover the retained part).
        #[arg(long, value_name = "DURATION", value_parser = outputs::parse_retention)]
        prometheus_retention: Option<std::time::Duration>,
    },
    /// Render manifests into the files Prometheus, Alertmanager, Grafana, the agent and
    /// Kubernetes consume.
    Render(Box<RenderArgs>),
    /// Run the operator in a cluster: leader election, and the controllers on the leader.
    Run(Box<RunArgs>),
    /// Run the analytics engine: baselines, anomaly scores and forecasts for every `anomaly`
    /// and `forecast` rule, read from Prometheus and served on `/metrics`; `backtest` replays a
    /// CSV series through the same models offline.
    Analytics(AnalyticsArgs),
}

/// Flags of `vigil-operator analytics backtest`.
#[derive(clap::Args, Debug)]
struct BacktestArgs {
    /// The series: a header row, then `timestamp,value` (NAB), `ds,y` (Prophet) or any two
    /// columns of timestamp (Unix seconds, `YYYY-MM-DD[ HH:MM:SS]`, RFC 3339) and value.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Seasonal period: `daily`, `weekly`, `dailyAndWeekly` or a duration such as `12h`;
    /// repeatable. Default: detected from the series.
    #[arg(long, value_name = "PERIOD", value_parser = vigil_operator::analytics::backtest::parse_period)]
    period: Vec<vigil_operator::analytics::backtest::PeriodSpec>,
    /// Horizon to forecast, such as `1h` or `1d`; repeatable. Default: `1h` and `1d`.
    #[arg(long, value_name = "DURATION", value_parser = vigil_operator::analytics::backtest::parse_duration)]
    horizon: Vec<i64>,
    /// Central probability of the forecast band, between 0 and 1.
    #[arg(long, default_value_t = 0.8)]
    level: f64,
    /// Known events as CSV rows `name,start,end` (RFC 3339 date or date-time; end exclusive,
    /// default start + 1 day): learned from their past occurrences, applied to future ones.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

/// Flags of `vigil-operator analytics`: without a subcommand it runs the engine.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct AnalyticsArgs {
    #[command(subcommand)]
    command: Option<AnalyticsCommand>,
    /// Boxed: the engine's flags are large and `Command` is built once.
    #[command(flatten)]
    run: Box<vigil_operator::analytics::engine::EngineArgs>,
}

/// Offline analytics tools.
#[derive(Subcommand, Debug)]
enum AnalyticsCommand {
    /// Forecast a CSV series from its end with calibrated bands, evaluate the forecast at
    /// rolling origins (MAPE and band coverage per horizon) and summarise the online
    /// detector's anomaly scores.
    Backtest(BacktestArgs),
}

/// Flags of `vigil-operator render`.
#[derive(clap::Args, Debug)]
struct RenderArgs {
    /// A manifest file or a directory searched recursively; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Output directory; replaced as a whole only when rendering succeeds. It must be new,
    /// empty or written by an earlier render.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
    /// Replace the output directory's content even when an earlier render did not write it.
    #[arg(long)]
    force: bool,
    /// Alertmanager release the configuration targets: `0.26` and later read webhook URLs
    /// from files; `0.25` cannot, so webhook receivers get an unroutable placeholder URL.
    #[arg(long, value_name = "VERSION", default_value = "0.26", value_parser = ["0.25", "0.26"])]
    alertmanager_version: String,
    /// The platform's own `alertmanager.yml`: Vigil's routes and receivers are merged into
    /// it, and it keeps its SMTP relay, root route, receivers and templates. Without it the
    /// file has a no-op root receiver and no SMTP relay (e-mail receivers need one).
    #[arg(long, value_name = "FILE")]
    alertmanager_base_config: Option<PathBuf>,
    /// How long the target Prometheus keeps data, such as `15d`: an SLO whose window is
    /// longer gets a warning.
    #[arg(long, value_name = "DURATION", value_parser = outputs::parse_retention)]
    prometheus_retention: Option<std::time::Duration>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Name of this Kubernetes cluster, for backends many clusters ship to: the `cluster` label
    /// on every series the agents send and on every generated alert, and the
    /// `k8s.cluster.name` attribute on every OTLP record. Default: none.
    #[arg(long, env = "VIGIL_CLUSTER_NAME", value_name = "NAME", value_parser = cluster_name)]
    cluster_name: Option<String>,
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
    /// Base URL of the Prometheus each SLO's remaining error budget is read from (an instant
    /// query) for its status and `kubectl get slo`; default: `--prometheus-url`.
    #[arg(long, value_name = "URL")]
    prometheus_query_url: Option<String>,
    /// How long the target Prometheus keeps data, such as `15d`: an SLO whose window is longer
    /// gets a warning in its status.
    #[arg(long, value_name = "DURATION", value_parser = outputs::parse_retention)]
    prometheus_retention: Option<std::time::Duration>,
    #[command(flatten)]
    outputs: OutputArgs,
    #[command(flatten)]
    webhook: vigil_operator::webhook::WebhookArgs,
    /// Name of this Kubernetes cluster, for backends many clusters ship to: the `cluster` label
    /// on every series the agents send and on every generated alert, and the
    /// `k8s.cluster.name` attribute on every OTLP record. Default: none.
    #[arg(long, env = "VIGIL_CLUSTER_NAME", value_name = "NAME", value_parser = cluster_name)]
    cluster_name: Option<String>,
}

/// A cluster name: 1 to 63 letters, digits, `-`, `_` and `.` (a label value that every backend
/// accepts).
fn cluster_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a cluster name: use 1 to 63 letters, digits, '-', '_' and '.'"
        ))
    }
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
        Command::Check {
            files,
            prometheus_retention,
        } => match manifests::load(&files) {
            Ok(loaded) => {
                let inv = &loaded.inventory;
                warn_retention(&loaded, prometheus_retention);
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
        Command::Render(args) => {
            let RenderArgs {
                files,
                output,
                force,
                alertmanager_version,
                alertmanager_base_config,
                prometheus_retention,
                outputs,
                cluster_name,
            } = *args;
            let alertmanager_base = match alertmanager_base_config.map(read_base_config) {
                None => None,
                Some(Ok(text)) => Some(text),
                Some(Err(code)) => return code,
            };
            let options = bundle::Options {
                alertmanager: alertmanager_version_of(&alertmanager_version),
                alertmanager_base,
                outputs: outputs.outputs(),
                cluster: cluster_name,
            };
            render(&files, &output, force, options, prometheus_retention)
        }
        Command::Run(args) => run_operator(*args),
        Command::Analytics(args) => match args.command {
            None => run_analytics(*args.run),
            Some(AnalyticsCommand::Backtest(args)) => backtest(args),
        },
    }
}

/// `vigil-operator analytics backtest`: the report of one CSV series, as text or JSON.
fn backtest(args: BacktestArgs) -> ExitCode {
    use vigil_operator::analytics::{backtest, series::Series};
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            eprintln!("vigil-operator: cannot read {}: {e}", path.display());
            ExitCode::FAILURE
        })
    };
    let text = match read(&args.csv) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let series = match Series::from_csv(&text) {
        Ok(series) => series,
        Err(e) => {
            eprintln!("vigil-operator: {}: {e}", args.csv.display());
            return ExitCode::FAILURE;
        }
    };
    let events = match &args.events {
        None => Vec::new(),
        Some(path) => match read(path).map(|t| backtest::parse_events(&t)) {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                eprintln!("vigil-operator: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            Err(code) => return code,
        },
    };
    let options = backtest::BacktestOptions {
        periods: args.period,
        horizons: args.horizon,
        level: args.level,
        events,
    };
    match backtest::run(&series, &options) {
        Ok(report) if args.output == "json" => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vigil-operator: cannot encode the report: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            print!("{}", report.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil-operator: {}: {e}", args.csv.display());
            ExitCode::FAILURE
        }
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
            outputs: args.outputs.outputs(),
            prometheus_retention: args.prometheus_retention,
            prometheus_query_url: args.prometheus_query_url.or(args.prometheus_url.clone()),
            cluster: args.cluster_name,
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

fn run_analytics(args: vigil_operator::analytics::engine::EngineArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vigil-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vigil_operator::analytics::engine::cluster::run(args)) {
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

/// Prints a warning for every SLO whose window is longer than Prometheus keeps data.
fn warn_retention(loaded: &manifests::Loaded, retention: Option<std::time::Duration>) {
    for slo in &loaded.inventory.slos {
        if let Some(warning) = vigil_operator::render::slo::retention_warning(slo, retention) {
            eprintln!(
                "warning: SLO/{}/{}: spec.window: {warning}",
                vigil_operator::render::namespace_of(slo),
                kube::ResourceExt::name_any(slo)
            );
        }
    }
}

fn render(
    files: &[PathBuf],
    output: &Path,
    force: bool,
    options: bundle::Options,
    retention: Option<std::time::Duration>,
) -> ExitCode {
    let loaded = match manifests::load(files) {
        Ok(loaded) => loaded,
        Err(problems) => return report(&problems),
    };
    warn_retention(&loaded, retention);
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
    if let Err(e) = bundle::write(&rendered, output, force) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--cluster-name` takes label-value-safe names of 1 to 63 characters and refuses others
    /// with a message saying what is allowed.
    #[test]
    fn cluster_names_are_checked() {
        for good in [
            "eu-prod-1",
            "gke_project_europe-west1_prod",
            "a",
            &"x".repeat(63),
        ] {
            assert_eq!(cluster_name(good).as_deref(), Ok(good));
        }
        for bad in ["", "eu prod", "eu/prod", "naïve", &"x".repeat(64)] {
            let e = cluster_name(bad).unwrap_err();
            assert!(e.contains("is not a cluster name"), "{e}");
        }
        let cli = Cli::try_parse_from([
            "vigil-operator",
            "render",
            "-f",
            "in",
            "-o",
            "out",
            "--cluster-name",
            "eu-prod-1",
        ])
        .unwrap();
        let Command::Render(args) = cli.command else {
            panic!("render expected");
        };
        assert_eq!(args.cluster_name.as_deref(), Some("eu-prod-1"));
    }

    /// `analytics` without a subcommand takes the engine flags: Prometheus URL and tenant
    /// headers, step and refit interval as Prometheus durations, listen address; a bad
    /// duration is refused naming the flag's value.
    #[test]
    fn analytics_takes_the_engine_flags() {
        let cli = Cli::try_parse_from([
            "vigil-operator",
            "analytics",
            "--prometheus-url",
            "https://mimir.example/prometheus",
            "--prometheus-header",
            "X-Scope-OrgID=tenant-a",
            "--prometheus-bearer-token-file",
            "/var/run/secrets/token",
            "--step",
            "30s",
            "--refit-interval",
            "2h",
            "--namespace",
            "shop",
        ])
        .unwrap();
        let Command::Analytics(args) = cli.command else {
            panic!("analytics expected");
        };
        assert!(args.command.is_none());
        let run = args.run;
        assert_eq!(run.prometheus_url, "https://mimir.example/prometheus");
        assert_eq!(run.prometheus_headers.len(), 1);
        assert_eq!(run.step, std::time::Duration::from_secs(30));
        assert_eq!(run.refit_interval, std::time::Duration::from_secs(7200));
        assert_eq!(run.listen.to_string(), "0.0.0.0:8090");
        assert_eq!(run.namespace.as_deref(), Some("shop"));
        assert_eq!(run.run_settings().step, 30);
        let e = Cli::try_parse_from(["vigil-operator", "analytics", "--step", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"soon\" is not a Prometheus duration"), "{e}");
    }
}
