//! The controllers' own telemetry: reconciles per kind, failures per kind and error category
//! (the same [`super::Error::category`] that names the Event), and reconcile duration.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Reconcile counters and the duration histogram, registered in a caller's registry.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    /// `vigil_operator_reconciles_total{kind}`.
    pub reconciles: IntCounterVec,
    /// `vigil_operator_reconcile_failures_total{kind, error}`.
    pub failures: IntCounterVec,
    /// `vigil_operator_reconcile_duration_seconds{kind}`.
    pub duration: HistogramVec,
}

impl ReconcileMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<ReconcileMetrics, prometheus::Error> {
        let reconciles = IntCounterVec::new(
            Opts::new(
                "vigil_operator_reconciles_total",
                "Reconciles run, by resource kind.",
            ),
            &["kind"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "vigil_operator_reconcile_failures_total",
                "Reconciles that failed, by resource kind and error category.",
            ),
            &["kind", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "vigil_operator_reconcile_duration_seconds",
                "Time one reconcile took, by resource kind.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ReconcileMetrics {
            reconciles,
            failures,
            duration,
        })
    }

    /// Records one finished reconcile of `kind` that started at `started`.
    pub fn record(&self, kind: &str, started: Instant, failure: Option<&str>) {
        self.reconciles.with_label_values(&[kind]).inc();
        self.duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        if let Some(category) = failure {
            self.failures.with_label_values(&[kind, category]).inc();
        }
    }
}
