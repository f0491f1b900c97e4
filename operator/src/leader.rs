//! Leader election with a `coordination.k8s.io/v1` Lease: only the replica holding the lease
//! runs the controllers (and so writes); every replica keeps serving the webhook.
//!
//! The holder renews every third of the lease duration; another replica takes over once the
//! lease has not been renewed for a whole duration, and a replica that shuts down gracefully
//! releases the lease by clearing `holderIdentity`, so a successor takes over at once instead
//! of waiting for expiry. Every write is a compare-and-swap on the Lease's `resourceVersion`, so
//! two candidates can never both win a round. The decision itself ([`decide`]) is pure.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

/// Where the lease lives and who competes for it.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name, such as `vigil-operator`.
    pub name: String,
    /// Namespace of the lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
}

impl LeaseSettings {
    /// The holder renews every third of the lease duration; candidates retry as often.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }
}

/// What to do with the lease in one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease object: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    Acquire,
    /// Someone else holds a live lease: wait.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides one round for `identity` given the lease (`None`: no Lease object) at `now`.
/// `default_duration` applies when the lease names none.
pub fn decide(
    lease: Option<&LeaseSpec>,
    now: Timestamp,
    identity: &str,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .unwrap_or_else(|| {
            SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::MAX)
        });
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last {
        Some(last) if last.checked_add(duration).is_ok_and(|end| end > now) => Decision::Wait {
            holder: holder.to_owned(),
        },
        _ => Decision::Acquire,
    }
}

/// Why a round of the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or could not be reached.
    #[error("cannot {action} the lease {namespace}/{name}")]
    Lease {
        /// `read`, `create`, `renew`, `acquire` or `release`.
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Competes for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// An elector for `settings` using `client`.
    pub fn new(client: Client, settings: LeaseSettings) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn error(&self, action: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Lease {
            action,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: create, renew or take over the lease when [`decide`] says so. Returns
    /// whether this replica holds the lease afterwards; losing a race is not an error.
    pub async fn try_lead(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| self.error("read", e))?;
        let decision = decide(
            existing
                .as_ref()
                .map(|l| l.spec.clone().unwrap_or_default())
                .as_ref(),
            now,
            &self.settings.identity,
            self.settings.duration,
        );
        let identity = Some(self.settings.identity.clone());
        let (action, result) = match (decision, existing) {
            (Decision::Wait { .. }, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: identity,
                        lease_duration_seconds: Some(self.duration_seconds()),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                (
                    "create",
                    self.api.create(&PostParams::default(), &lease).await,
                )
            }
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                ("renew", self.replace(&lease).await)
            }
            (Decision::Acquire, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = identity;
                spec.lease_duration_seconds = Some(self.duration_seconds());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                ("acquire", self.replace(&lease).await)
            }
            // `decide` only says Renew or Acquire for an existing lease.
            (Decision::Renew | Decision::Acquire, None) => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote the lease (or created it) first: they won this round.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.error(action, e)),
        }
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.settings.name, &PostParams::default(), lease)
            .await
    }

    /// Gives the lease up if this replica holds it, so a successor takes over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| self.error("read", e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.replace(&lease).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(self.error("release", e)),
        }
    }

    /// Runs the election until `shutdown` turns `true`, publishing whether this replica leads
    /// on `leading`; releases the lease on the way out. A replica that leads and cannot reach
    /// the API server keeps leading only while its last renewal is younger than two thirds of
    /// the lease duration, so it steps down before anyone else may take over.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewal: Option<Instant> = None;
        let deadline = self.settings.duration * 2 / 3;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let leads = match self.try_lead().await {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    last_renewal.is_some_and(|t| t.elapsed() < deadline)
                }
            };
            if !leads {
                last_renewal = None;
            }
            if *leading.borrow() != leads {
                tracing::info!(identity = %self.settings.identity, leads, "leadership changed");
                leading.send_replace(leads);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_interval()) => {}
                _ = shutdown.changed() => {}
            }
        }
        leading.send_replace(false);
        if last_renewal.is_some() {
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "cannot release the lease");
            }
        }
    }
}

#[cfg(test)]
mod tests;
