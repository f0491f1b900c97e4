//! `vigil-operator analytics`: the engine that reads the series of every `anomaly` and
//! `forecast` rule, and every SLO's SLI error ratio (its recording, filled in from the raw
//! series where the recording has no history yet), from Prometheus and publishes baselines,
//! anomaly scores, calibrated forecasts and error-budget forecasts on its own `/metrics` for
//! the rendered rules and dashboards to read.
//!
//! - [`prometheus`]: the HTTP API client (auth from files, tenant headers, custom CA, chunked
//!   ranges).
//! - [`jobs`]: the pure mapping from `AlertPolicy` rules and `SLO`s to jobs.
//! - [`runner`]: one run of one job (detectors, forecast fits, published points).
//! - [`budget`]: an SLO's error-ratio forecast rolled over its window into budget exhaustion.
//! - [`exposition`]: the published series, the engine's health metrics and its HTTP server.
//! - [`cluster`]: policy and SLO discovery, leader election and the `Analytics` condition.
//!
//! The scheduler ([`Engine`]) runs each anomaly job every step and refits each forecast and
//! budget job every refit interval (jittered per job), each on its own task with bounded
//! concurrency, so a slow fit or an unreachable Prometheus never holds up another job. A job
//! whose Prometheus query fails backs off exponentially (5 s doubling to 5 min) and withdraws
//! its series once they are stale.

pub mod budget;
pub mod cluster;
pub mod exposition;
pub mod jobs;
pub mod prometheus;
pub mod runner;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::time::Instant;

use self::jobs::{Job, JobKey};
use self::runner::{JobState, Outcome, RunContext};

/// Flags of `vigil-operator analytics` (running the engine).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Base URL of the Prometheus HTTP API the rules' series are read from, such as
    /// `http://prometheus:9090` or `https://mimir.example/prometheus`.
    #[arg(long, value_name = "URL", default_value = "http://prometheus:9090")]
    pub prometheus_url: String,
    /// File holding a bearer token sent to Prometheus; re-read on every request.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "prometheus_basic_auth_username_file"
    )]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// File holding the basic-auth user name for Prometheus; re-read on every request.
    #[arg(
        long,
        value_name = "FILE",
        requires = "prometheus_basic_auth_password_file"
    )]
    pub prometheus_basic_auth_username_file: Option<PathBuf>,
    /// File holding the basic-auth password for Prometheus; re-read on every request.
    #[arg(
        long,
        value_name = "FILE",
        requires = "prometheus_basic_auth_username_file"
    )]
    pub prometheus_basic_auth_password_file: Option<PathBuf>,
    /// A header sent on every Prometheus request, as `NAME=VALUE` (such as
    /// `X-Scope-OrgID=tenant-a` for Mimir); repeatable. Values are never logged.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub prometheus_headers: Vec<(HeaderName, HeaderValue)>,
    /// PEM file of the CA certificates that sign Prometheus' certificate (instead of the
    /// system roots).
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Seconds one Prometheus request may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub prometheus_timeout_seconds: u64,
    /// How often forecasts are refitted, such as `1h`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub refit_interval: Duration,
    /// Seconds between points of every series read, and how often anomaly rules are judged,
    /// such as `60s`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub step: Duration,
    /// Most result series one rule follows (one model each); more are left out with a
    /// warning.
    #[arg(long, value_name = "COUNT", default_value_t = 500)]
    pub max_series_per_rule: usize,
    /// Forecast fits running at once.
    #[arg(long, value_name = "COUNT", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_concurrent_fits: u64,
    /// Address serving `/metrics` (the published series and the engine's health), `/healthz`
    /// and `/readyz`.
    #[arg(long, value_name = "ADDRESS", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    /// Read AlertPolicies in this namespace only (default: the whole cluster).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the `vigil-analytics` leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vigil-system")]
    pub operator_namespace: String,
    /// This replica's identity in leader election.
    #[arg(long, env = "POD_NAME", default_value = "vigil-analytics")]
    pub identity: String,
    /// Lease validity in seconds; the leader renews every third of it.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_duration_seconds: u64,
    /// Kubeconfig file; default: the in-cluster configuration, else `KUBECONFIG` or
    /// `~/.kube/config`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = vigil_crds::Duration::parse(text)
        .map_err(|e| format!("{text:?} is not a Prometheus duration such as 60s or 1h: {e}"))?;
    let d = Duration::from_secs_f64(d.as_secs_f64());
    if d < Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than one second"));
    }
    Ok(d)
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "a header is NAME=VALUE, such as X-Scope-OrgID=tenant-a".to_owned())?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("{:?} is not an HTTP header name", name.trim()))?;
    // The value may be a secret: the message never repeats it.
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

impl EngineArgs {
    /// The Prometheus settings these flags give.
    pub fn prometheus_settings(&self) -> prometheus::PrometheusSettings {
        prometheus::PrometheusSettings {
            url: self.prometheus_url.clone(),
            bearer_token_file: self.prometheus_bearer_token_file.clone(),
            basic_auth_files: self
                .prometheus_basic_auth_username_file
                .clone()
                .zip(self.prometheus_basic_auth_password_file.clone()),
            headers: self.prometheus_headers.clone(),
            ca_file: self.prometheus_ca_file.clone(),
            timeout: Duration::from_secs(self.prometheus_timeout_seconds),
        }
    }

    /// The run settings these flags give.
    pub fn run_settings(&self) -> runner::RunSettings {
        runner::RunSettings {
            step: i64::try_from(self.step.as_secs()).unwrap_or(60).max(1),
            refit_interval: i64::try_from(self.refit_interval.as_secs())
                .unwrap_or(3600)
                .max(1),
            max_series_per_rule: self.max_series_per_rule.max(1),
        }
    }
}

/// Exponential backoff of a failing job: `initial`, doubling per consecutive failure, at most
/// `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
            failures: 0,
        }
    }
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 2u32.saturating_pow(self.failures - 1);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Records a success.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A job's state and when it runs next.
struct Slot {
    state: Arc<Mutex<JobState>>,
    schedule: Arc<std::sync::Mutex<Schedule>>,
}

#[derive(Debug)]
struct Schedule {
    due: Instant,
    backoff: Backoff,
}

/// A per-job offset in `[0, span)`, stable across restarts, so refits of many rules spread
/// out instead of all hitting Prometheus at the same second.
fn jitter(key: &JobKey, span: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let millis = u64::try_from(span.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(hasher.finish() % millis)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The scheduler: the jobs, their state and the shared parts every run uses.
pub struct Engine {
    ctx: Arc<RunContext>,
    slots: BTreeMap<JobKey, Slot>,
    fits: Arc<Semaphore>,
    updates: Arc<Semaphore>,
}

impl Engine {
    /// An engine with no job yet; at most `max_concurrent_fits` forecast fits at once.
    pub fn new(ctx: RunContext, max_concurrent_fits: usize) -> Engine {
        Engine {
            ctx: Arc::new(ctx),
            slots: BTreeMap::new(),
            fits: Arc::new(Semaphore::new(max_concurrent_fits.max(1))),
            updates: Arc::new(Semaphore::new(8)),
        }
    }

    /// The shared parts (published series, metrics).
    pub fn context(&self) -> &RunContext {
        &self.ctx
    }

    /// Makes `jobs` the engine's jobs: new ones start (their first run soon, jittered over a
    /// tenth of the interval, at most 30 s), changed ones start over, and removed ones stop
    /// and withdraw their series.
    pub fn set_jobs(&mut self, jobs: Vec<Job>) {
        let wanted: BTreeMap<JobKey, Job> = jobs.into_iter().map(|j| (j.key.clone(), j)).collect();
        let removed: Vec<JobKey> = self
            .slots
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in removed {
            self.slots.remove(&key);
            self.ctx.published.remove(&key);
            self.ctx.metrics.forget(&key);
        }
        for (key, job) in wanted {
            let same = self.slots.get(&key).is_some_and(|slot| {
                slot.state
                    .try_lock()
                    .map(|s| s.job == job)
                    // Running: the job's definition is compared on the next update.
                    .unwrap_or(true)
            });
            if same {
                continue;
            }
            let first = if job.refits() {
                jitter(
                    &key,
                    (self.interval(&job) / 10).min(Duration::from_secs(30)),
                )
            } else {
                Duration::ZERO
            };
            self.ctx.published.remove(&key);
            self.slots.insert(
                key,
                Slot {
                    state: Arc::new(Mutex::new(JobState::new(job))),
                    schedule: Arc::new(std::sync::Mutex::new(Schedule {
                        due: Instant::now() + first,
                        backoff: Backoff::default(),
                    })),
                },
            );
        }
        self.ctx.metrics.series.set(self.ctx.published.len() as i64);
    }

    fn interval(&self, job: &Job) -> Duration {
        let seconds = if job.refits() {
            self.ctx.settings.refit_interval
        } else {
            self.ctx.settings.step
        };
        Duration::from_secs(u64::try_from(seconds).unwrap_or(60).max(1))
    }

    /// Runs every job once now, one after another, and returns their outcomes (the scheduler
    /// without the clock: for tests and the first cycle).
    pub async fn run_all_once(&self) -> Vec<(JobKey, Outcome)> {
        self.run_all_at(unix_now()).await
    }

    /// [`Engine::run_all_once`] as if it were `now` (Unix seconds).
    pub async fn run_all_at(&self, now: i64) -> Vec<(JobKey, Outcome)> {
        let mut out = Vec::new();
        for (key, slot) in &self.slots {
            let mut state = slot.state.lock().await;
            let outcome = runner::run(&mut state, &self.ctx, now).await;
            reschedule(
                &slot.schedule,
                &state.job,
                &outcome,
                self.interval(&state.job),
            );
            out.push((key.clone(), outcome));
        }
        out
    }

    /// Consecutive failures of `key`'s job and the wait before its next run.
    pub fn backoff_of(&self, key: &JobKey) -> Option<(u32, Duration)> {
        let slot = self.slots.get(key)?;
        let schedule = slot.schedule.lock().ok()?;
        Some((
            schedule.backoff.failures(),
            schedule.due.saturating_duration_since(Instant::now()),
        ))
    }

    /// The last outcome of every job that is not running right now.
    pub fn outcomes(&self) -> Vec<(JobKey, Option<Outcome>)> {
        self.slots
            .iter()
            .filter_map(|(k, slot)| Some((k.clone(), slot.state.try_lock().ok()?.outcome.clone())))
            .collect()
    }

    /// Starts every due job that is not already running, each on its own task.
    pub fn start_due(&self) {
        let now = Instant::now();
        for slot in self.slots.values() {
            let due = slot.schedule.lock().map(|s| s.due <= now).unwrap_or(false);
            if !due {
                continue;
            }
            let Ok(mut state) = slot.state.clone().try_lock_owned() else {
                continue; // still running
            };
            let interval = self.interval(&state.job);
            let semaphore = if state.job.refits() {
                self.fits.clone()
            } else {
                self.updates.clone()
            };
            let (ctx, schedule) = (self.ctx.clone(), slot.schedule.clone());
            tokio::spawn(async move {
                let Ok(_permit) = semaphore.acquire_owned().await else {
                    return;
                };
                let outcome = runner::run(&mut state, &ctx, unix_now()).await;
                reschedule(&schedule, &state.job, &outcome, interval);
            });
        }
    }

    /// Runs the jobs from `jobs` while `leading` is true, until `shutdown` turns true, and
    /// shares the jobs' outcomes on `outcomes` (for the `Analytics` conditions). A replica that
    /// does not lead publishes no job series and keeps no model state.
    pub async fn run(
        mut self,
        mut jobs: watch::Receiver<Vec<Job>>,
        mut leading: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
        outcomes: watch::Sender<Vec<(JobKey, Option<Outcome>)>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = jobs.changed() => {}
                _ = leading.changed() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if !*leading.borrow() {
                if !self.slots.is_empty() {
                    tracing::info!("not leading: withdrawing every published series");
                    self.set_jobs(Vec::new());
                }
                self.ctx.published.clear();
                continue;
            }
            let current = jobs.borrow_and_update().clone();
            self.set_jobs(current);
            // A run that finished after its job was removed may have published: sweep it.
            let slots = &self.slots;
            self.ctx.published.retain(|k| slots.contains_key(k));
            self.start_due();
            outcomes.send_replace(self.outcomes());
        }
        self.ctx.published.clear();
    }
}

fn reschedule(
    schedule: &std::sync::Mutex<Schedule>,
    job: &Job,
    outcome: &Outcome,
    interval: Duration,
) {
    let Ok(mut schedule) = schedule.lock() else {
        return;
    };
    let wait = if outcome.backs_off() {
        schedule.backoff.fail()
    } else {
        schedule.backoff.succeed();
        if job.refits() {
            // Refits spread over a tenth of the interval so they do not bunch up.
            interval + jitter(&job.key, interval / 10)
        } else {
            interval
        }
    };
    schedule.due = Instant::now() + wait;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// Backoff starts at 5 s, doubles per failure, stops at 5 min and resets on success.
    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.fail().as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.failures(), 9);
        b.succeed();
        assert_eq!(b.fail().as_secs(), 5);
        for _ in 0..100 {
            b.fail();
        }
        assert_eq!(b.fail().as_secs(), 300);
    }

    /// Jitter stays inside its span and is stable per job.
    #[test]
    fn jitter_is_bounded_and_stable() {
        let key = JobKey {
            namespace: "shop".into(),
            policy: "p".into(),
            rule: "R".into(),
        };
        let span = Duration::from_secs(360);
        assert!(jitter(&key, span) < span);
        assert_eq!(jitter(&key, span), jitter(&key, span));
        assert_eq!(jitter(&key, Duration::ZERO), Duration::ZERO);
    }

    /// Header flags are NAME=VALUE; a bad one is refused without repeating the value.
    #[test]
    fn header_flags_are_checked() {
        let (name, value) = parse_header("X-Scope-OrgID=tenant-a").unwrap();
        assert_eq!(name.as_str(), "x-scope-orgid");
        assert!(value.is_sensitive());
        assert!(parse_header("novalue").unwrap_err().contains("NAME=VALUE"));
        let e = parse_header("X-Token=secret\nvalue").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(parse_header("bad name=v").unwrap_err().contains("bad name"));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }
}
