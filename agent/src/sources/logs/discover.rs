//! Log source, discovery: which files to tail. The pod's own log directory holds one folder per
//! container with one file per container start (`<container>/0.log`, `1.log` after a restart,
//! …); every container but the agent's own is read (or only the configured ones). The `files`
//! globs add plain files. Discovery runs again periodically, so containers started later and
//! files created later are picked up.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::tail::FileId;

/// Name of the injected agent container, whose own logs are never read (reading them would
/// feed the agent's log lines about reading lines back into itself).
pub const AGENT_CONTAINER: &str = "vigil-agent";

/// Where discovered files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A container's file in the pod log directory (CRI format).
    Container(Arc<str>),
    /// A file matched by a `files` glob (plain lines).
    Glob,
}

/// A file to tail.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub id: FileId,
    pub origin: Origin,
    /// Files with the same lineage are successive generations of one log: a rotated one is
    /// finished before its successor is read.
    pub lineage: Arc<str>,
    /// Order of reading within a lineage (the restart count `N` of `N.log`).
    pub rank: u64,
}

/// What discovery looks at.
#[derive(Clone, Debug, Default)]
pub(crate) struct Targets {
    pub pod_log_dir: Option<PathBuf>,
    /// Only these containers; empty: all but the agent's.
    pub containers: Vec<String>,
    pub files: Vec<String>,
}

/// A problem met while looking for files: what was being looked at, and why it failed.
#[derive(Debug)]
pub(crate) struct Problem {
    /// Stable PascalCase category for the error counter.
    pub category: &'static str,
    pub path: String,
    pub error: String,
}

impl Targets {
    /// Whether a container's logs are read.
    pub fn wants_container(&self, name: &str) -> bool {
        name != AGENT_CONTAINER
            && (self.containers.is_empty() || self.containers.iter().any(|c| c == name))
    }

    /// Every file to tail, each once (by identity), in reading order.
    pub fn discover(&self, problems: &mut Vec<Problem>) -> Vec<Found> {
        let mut found = Vec::new();
        if let Some(dir) = &self.pod_log_dir {
            self.discover_containers(dir, &mut found, problems);
        }
        for pattern in &self.files {
            discover_glob(pattern, &mut found, problems);
        }
        // A file both in the pod log directory and matched by a glob is read as a container's.
        let mut seen = std::collections::HashSet::new();
        found.retain(|f| seen.insert(f.id));
        found.sort_by(|a, b| (&a.lineage, a.rank, &a.path).cmp(&(&b.lineage, b.rank, &b.path)));
        found
    }

    fn discover_containers(&self, dir: &Path, found: &mut Vec<Found>, problems: &mut Vec<Problem>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => return problems.push(problem("LogDirRead", dir, &error)),
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !self.wants_container(&name) {
                continue;
            }
            let container_dir = entry.path();
            if !std::fs::metadata(&container_dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let files = match std::fs::read_dir(&container_dir) {
                Ok(files) => files,
                Err(error) => {
                    problems.push(problem("LogDirRead", &container_dir, &error));
                    continue;
                }
            };
            let container: Arc<str> = Arc::from(name.as_str());
            for file in files.flatten() {
                let file_name = file.file_name();
                let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".log")) else {
                    continue;
                };
                let path = file.path();
                let Ok(metadata) = std::fs::metadata(&path) else {
                    continue;
                };
                if !metadata.is_file() {
                    continue;
                }
                found.push(Found {
                    id: FileId::of(&metadata),
                    rank: stem.parse().unwrap_or(u64::MAX),
                    path,
                    origin: Origin::Container(container.clone()),
                    lineage: container.clone(),
                });
            }
        }
    }
}

fn discover_glob(pattern: &str, found: &mut Vec<Found>, problems: &mut Vec<Problem>) {
    let paths = match glob::glob(pattern) {
        Ok(paths) => paths,
        Err(error) => {
            return problems.push(Problem {
                category: "LogGlobInvalid",
                path: pattern.to_owned(),
                error: error.to_string(),
            })
        }
    };
    for entry in paths {
        let path = match entry {
            Ok(path) => path,
            Err(error) => {
                problems.push(problem("LogDirRead", error.path(), error.error()));
                continue;
            }
        };
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        found.push(Found {
            id: FileId::of(&metadata),
            lineage: Arc::from(path.to_string_lossy().as_ref()),
            rank: 0,
            path,
            origin: Origin::Glob,
        });
    }
}

fn problem(category: &'static str, path: &Path, error: &io::Error) -> Problem {
    Problem {
        category,
        path: path.display().to_string(),
        error: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &[Found], root: &Path) -> Vec<String> {
        found
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    /// Every container's `N.log` in restart order, never the agent's own, never rotated
    /// files; `containers` narrows the set; globs add plain files, each file once.
    #[test]
    fn containers_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pod");
        for (container, file) in [
            ("app", "0.log"),
            ("app", "10.log"),
            ("app", "2.log"),
            ("app", "0.log.20240501-120000"),
            ("app", "0.log.20240501-110000.gz"),
            ("sidecar", "0.log"),
            (AGENT_CONTAINER, "0.log"),
        ] {
            std::fs::create_dir_all(pods.join(container)).unwrap();
            std::fs::write(pods.join(container).join(file), "x\n").unwrap();
        }
        std::fs::write(dir.path().join("extra.log"), "x\n").unwrap();
        let mut problems = Vec::new();
        let targets = Targets {
            pod_log_dir: Some(pods.clone()),
            containers: Vec::new(),
            files: vec![
                format!("{}/*.log", dir.path().display()),
                format!("{}/pod/app/0.log", dir.path().display()),
            ],
        };
        let found = targets.discover(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut all = names(&found, dir.path());
        all.sort();
        assert_eq!(
            all,
            vec![
                "extra.log",
                "pod/app/0.log",
                "pod/app/10.log",
                "pod/app/2.log",
                "pod/sidecar/0.log"
            ]
        );
        let app: Vec<_> = found.iter().filter(|f| &*f.lineage == "app").collect();
        assert_eq!(
            app.iter().map(|f| f.rank).collect::<Vec<_>>(),
            vec![0, 2, 10]
        );
        assert!(app
            .iter()
            .all(|f| f.origin == Origin::Container(Arc::from("app"))));

        let only_sidecar = Targets {
            pod_log_dir: Some(pods),
            containers: vec!["sidecar".into(), AGENT_CONTAINER.into()],
            files: Vec::new(),
        };
        assert_eq!(
            names(&only_sidecar.discover(&mut problems), dir.path()),
            vec!["pod/sidecar/0.log"]
        );
    }

    /// A missing pod log directory and an invalid glob are reported, not fatal.
    #[test]
    fn problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let targets = Targets {
            pod_log_dir: Some(dir.path().join("missing")),
            containers: Vec::new(),
            files: vec!["[".into()],
        };
        let mut problems = Vec::new();
        assert!(targets.discover(&mut problems).is_empty());
        let categories: Vec<_> = problems.iter().map(|p| p.category).collect();
        assert_eq!(categories, vec!["LogDirRead", "LogGlobInvalid"]);
    }
}
