//! Why a reconcile failed: one error enum per step of `observe → validate → desired → apply →
//! status`, and [`Error`] around them. [`Error::category`] is the stable PascalCase name used as
//! the Kubernetes Event reason, the condition reason and the `error` label of the failure
//! metric; [`Error::is_permanent`] is what `error_policy` decides on.

use crate::manifests::Problem;

/// Reading what the cluster holds failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A GET or LIST against the API server failed.
    #[error("cannot read {what} for {object}")]
    Read {
        /// The resource being reconciled, as `Kind/namespace/name`.
        object: String,
        /// What was being read, such as `pods selected by spec.selector`.
        what: String,
        #[source]
        source: kube::Error,
    },
    /// API discovery (which optional CRDs exist) failed and nothing is cached yet.
    #[error("cannot discover the optional monitoring APIs for {object}")]
    Discovery {
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// The resource's spec cannot be turned into children; only the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// A `MonitoredApp` the resource refers to does not exist.
    #[error("{message}")]
    AppNotFound {
        /// The resource, as `Kind/namespace/name`.
        object: String,
        /// One sentence: which reference is dangling and how to fix it.
        message: String,
    },
    /// The spec breaks a rule that spans fields or objects.
    #[error("{}", problems_sentence(problems))]
    InvalidSpec {
        /// The resource, as `Kind/namespace/name`.
        object: String,
        /// Every problem found, each naming its field.
        problems: Vec<Problem>,
    },
}

impl ValidateError {
    /// The problems of `all` that concern `object` (as `Kind/namespace/name`), as an
    /// `InvalidSpec` error, or `None` when there are none.
    pub fn from_problems(object: &str, all: Vec<Problem>) -> Option<ValidateError> {
        let problems: Vec<Problem> = all
            .into_iter()
            .filter(|p| p.object.as_deref() == Some(object))
            .collect();
        (!problems.is_empty()).then(|| ValidateError::InvalidSpec {
            object: object.to_owned(),
            problems,
        })
    }

    /// A dangling reference from `object` (`Kind/namespace/name`) in `field` to the
    /// `MonitoredApp` `app` of `namespace`.
    pub fn app_not_found(object: &str, field: &str, namespace: &str, app: &str) -> ValidateError {
        ValidateError::AppNotFound {
            object: object.to_owned(),
            message: format!(
                "{field} {app:?} names no MonitoredApp in namespace {namespace:?}; create it or fix {field}"
            ),
        }
    }
}

/// Writing children (server-side apply, prune, finalizers, aggregates) failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Server-side apply of one child failed.
    #[error("cannot apply {child} for {object}")]
    Apply {
        object: String,
        /// The child, as `Kind/namespace/name`.
        child: String,
        #[source]
        source: kube::Error,
    },
    /// Listing or deleting children that are no longer desired failed.
    #[error("cannot prune {child} of {object}")]
    Prune {
        object: String,
        /// The child kind or object being pruned.
        child: String,
        #[source]
        source: kube::Error,
    },
    /// A rendered child could not be encoded as JSON.
    #[error("cannot encode {child} for {object}")]
    Encode {
        object: String,
        child: String,
        #[source]
        source: serde_json::Error,
    },
    /// A shared file could not be encoded as YAML.
    #[error("cannot encode {child} as YAML for {object}")]
    EncodeYaml {
        object: String,
        child: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// Adding or removing the aggregate finalizer failed.
    #[error("cannot update the finalizers of {object}")]
    Finalizer {
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// Writing the resource's status failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The status subresource patch failed.
    #[error("cannot write the status of {object}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Status(#[from] StatusError),
}

impl Error {
    /// Stable PascalCase name of the failure: Event reason, condition reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Observe(ObserveError::Read { source, .. }) => api_category(source, "ReadFailed"),
            Error::Observe(ObserveError::Discovery { .. }) => "DiscoveryFailed",
            Error::Validate(ValidateError::AppNotFound { .. }) => "AppNotFound",
            Error::Validate(ValidateError::InvalidSpec { .. }) => "InvalidSpec",
            Error::Apply(ApplyError::Apply { source, .. }) => match api_category(source, "") {
                "Conflict" => "ApplyConflict",
                "Forbidden" => "Forbidden",
                _ => "ApplyFailed",
            },
            Error::Apply(ApplyError::Prune { source, .. }) => api_category(source, "PruneFailed"),
            Error::Apply(ApplyError::Encode { .. } | ApplyError::EncodeYaml { .. }) => {
                "EncodeFailed"
            }
            Error::Apply(ApplyError::Finalizer { source, .. }) => {
                api_category(source, "FinalizerFailed")
            }
            Error::Status(StatusError::Write { source, .. }) => {
                api_category(source, "StatusFailed")
            }
        }
    }

    /// `true` when retrying cannot help until the resource (or what it refers to) changes:
    /// the controller then waits for a change instead of requeueing.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Validate(_))
    }

    /// One sentence for the `Ready` condition and the Event: what is wrong and what happens or
    /// what to do next.
    pub fn user_message(&self) -> String {
        match self {
            Error::Validate(e) => e.to_string(),
            other => {
                let cause = std::error::Error::source(other)
                    .and_then(std::error::Error::source)
                    .map(|c| format!(": {}", api_reason(c)))
                    .unwrap_or_default();
                let hint = match other.category() {
                    // OwnerReferencesPermissionEnforcement (on by default in OpenShift).
                    "Forbidden" if cause.contains("blockOwnerDeletion") => {
                        "; the cluster enforces OwnerReferencesPermissionEnforcement: grant the operator's service account update on the owner kind's finalizers subresource (the chart's ClusterRole does)"
                    }
                    "Forbidden" => "; grant the operator's service account this permission",
                    _ => "; the operator retries with backoff",
                };
                format!("{other}{cause}{hint}")
            }
        }
    }
}

/// A category from the API server's answer, for errors where the answer matters to the user.
fn api_category(error: &kube::Error, fallback: &'static str) -> &'static str {
    match error {
        kube::Error::Api(status) if status.code == 409 => "Conflict",
        kube::Error::Api(status) if status.code == 403 => "Forbidden",
        kube::Error::Api(status) if status.code == 404 => "NotFound",
        _ => fallback,
    }
}

/// The API server's message without kube's debug dump of the whole status.
fn api_reason(error: &(dyn std::error::Error + 'static)) -> String {
    match error.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        _ => error.to_string(),
    }
}

/// Problems as one sentence: `field: message; field: message`.
fn problems_sentence(problems: &[Problem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| match &p.field {
            Some(field) => format!("{field}: {}", p.message),
            None => p.message.clone(),
        })
        .collect();
    parts.join("; ")
}

/// `true` when `error` is the API server saying the object does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
