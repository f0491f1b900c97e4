//! The container images: `scripts/build-images.sh` writes an OCI image layout per binary, and
//! each image is what the chart expects to pull. Every blob matches its digest and the layer
//! its `diff_id`; the image runs as 65532:65532 (the UID the webhook's securityContext names)
//! and holds nothing but its binary (and the agent's CA bundle), so no shell; the layer is
//! reproducible; and each entry point runs, as the image's user, from the image's unpacked root
//! filesystem under `chroot`: `vigil-operator --version` and `render` of examples/banking,
//! `vigil-agent --version` and `--check-config` of the agent config that render wrote.
//!
//! The binaries are built with the dev profile: the release profile's fat LTO is too slow for
//! the test command, and the image is the same apart from the binary's speed.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vigil_operator::render::agent_config::{CONFIG_DIR, CONFIG_KEY};
use vigil_operator::render::inject::AGENT_UID;
use vigil_tests::{repo_root, tool};

/// One image of a layout, its layer unpacked.
struct Image {
    name: &'static str,
    /// The image config's `config` object (User, Entrypoint, Env, Labels).
    config: Value,
    rootfs: PathBuf,
}

fn chart_file(name: &str) -> serde_yaml::Value {
    let path = repo_root().join("charts/vigil").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tag the chart pulls by default: its appVersion.
fn app_version() -> String {
    let chart = chart_file("Chart.yaml");
    chart["appVersion"].as_str().expect("appVersion").to_owned()
}

/// The user the chart runs the operator as (`podSecurityContext`), as UID:GID.
fn chart_operator_user() -> String {
    let values = chart_file("values.yaml");
    let context = &values["podSecurityContext"];
    let id = |key: &str| {
        context[key]
            .as_u64()
            .unwrap_or_else(|| panic!("podSecurityContext.{key}"))
    };
    format!("{}:{}", id("runAsUser"), id("runAsGroup"))
}

fn output_text(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed\n{}",
        output_text(&output)
    );
    output
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new(tool("sha256sum")).arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        text.split_whitespace().next().unwrap_or_default()
    )
}

/// The blob `descriptor` points to, after checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert_eq!(
        sha256(&path),
        digest,
        "{}: blob does not match its digest",
        path.display()
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        Some(size),
        descriptor["size"].as_u64(),
        "{}: size",
        path.display()
    );
    path
}

/// Reads the layout's one manifest, checks every digest, and unpacks the layer into `dir`.
fn unpack(layout: &Path, name: &'static str, dir: &Path) -> Image {
    let oci_layout = read_json(&layout.join("oci-layout"));
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 1, "{name}: one image per layout");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        app_version().as_str(),
        "{name}: tagged with the chart's appVersion"
    );
    let manifest = read_json(&blob(layout, &manifests[0]));
    let config = read_json(&blob(layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(layers.len(), 1, "{name}: one layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let tar = dir.join(format!("{name}.tar"));
    let tar_file = std::fs::File::create(&tar).unwrap();
    run_ok(
        Command::new(tool("gzip"))
            .arg("-dc")
            .arg(blob(layout, &layers[0]))
            .stdout(tar_file),
    );
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str(),
        Some(sha256(&tar).as_str()),
        "{name}: the config's diff_id is the uncompressed layer's digest"
    );
    assert_eq!(config["os"], "linux");
    let rootfs = dir.join(name);
    std::fs::create_dir(&rootfs).unwrap();
    run_ok(
        Command::new(tool("tar"))
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs),
    );
    Image {
        name,
        config: config["config"].clone(),
        rootfs,
    }
}

/// Every path in the root filesystem, relative, directories with a trailing `/`.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                found.insert(format!("{relative}/"));
                pending.push(path);
            } else {
                found.insert(relative);
            }
        }
    }
    found
}

impl Image {
    fn entrypoint(&self) -> String {
        let entrypoint = self.config["Entrypoint"].as_array().expect("Entrypoint");
        assert_eq!(entrypoint.len(), 1, "{}: the binary alone", self.name);
        entrypoint[0].as_str().expect("Entrypoint path").to_owned()
    }

    fn user(&self) -> &str {
        self.config["User"].as_str().expect("User")
    }

    /// Runs the entry point with `args` as the runtime would: root directory the image's,
    /// user and environment the image config's. Where `chroot` is not permitted (not root),
    /// it runs in a user namespace as the caller instead, and says so.
    fn run(&self, args: &[&str]) -> Output {
        let env = self.config["Env"].as_array().expect("Env");
        let command = |prefix: &[&str]| {
            let mut command = Command::new(prefix[0]);
            command
                .args(&prefix[1..])
                .arg(&self.rootfs)
                .arg(self.entrypoint())
                .args(args)
                .env_clear();
            for pair in env.iter().filter_map(Value::as_str) {
                let (key, value) = pair.split_once('=').expect("Env entries are KEY=VALUE");
                command.env(key, value);
            }
            command
        };
        let chroot = tool("chroot");
        let chroot = chroot.to_str().expect("chroot path");
        let userspec = format!("--userspec={}", self.user());
        let output = command(&[chroot, &userspec]).output().expect("run chroot");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(125) && stderr.contains("cannot change root directory") {
            eprintln!(
                "{}: chroot is not permitted here ({}); running in a user namespace as uid 0 \
                 mapped to the caller, not as {}",
                self.name,
                stderr.trim(),
                self.user()
            );
            let unshare = tool("unshare");
            let unshare = unshare.to_str().expect("unshare path");
            return command(&[unshare, "--map-root-user", chroot])
                .output()
                .expect("run unshare");
        }
        output
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{} {args:?} failed in the image's root filesystem\n{}",
            self.name,
            output_text(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn build_images(out: &Path) {
    let output = Command::new(repo_root().join("scripts/build-images.sh"))
        .args(["--profile", "dev", "--out"])
        .arg(out)
        .output()
        .expect("run scripts/build-images.sh");
    assert!(
        output.status.success(),
        "scripts/build-images.sh failed\n{}",
        output_text(&output)
    );
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
}

/// Both images build, are valid OCI layouts tagged with the chart's appVersion, run as
/// 65532:65532 with no shell, and their entry points work from their own root filesystems:
/// the operator renders the banking example and the agent accepts the config it rendered.
#[test]
fn images_build_and_their_entry_points_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layouts = tmp.path().join("images");
    build_images(&layouts);
    let version = app_version();

    let operator = unpack(
        &layouts.join("vigil-operator"),
        "vigil-operator",
        tmp.path(),
    );
    let agent = unpack(&layouts.join("vigil-agent"), "vigil-agent", tmp.path());
    assert_eq!(
        operator.user(),
        chart_operator_user(),
        "operator: the chart's user"
    );
    assert_eq!(
        agent.user(),
        format!("{AGENT_UID}:{AGENT_UID}"),
        "agent: the webhook's user"
    );
    for image in [&operator, &agent] {
        let name = image.name;
        assert_ne!(
            image.user().split(':').next(),
            Some("0"),
            "{name}: non-root"
        );
        assert_eq!(image.entrypoint(), format!("/usr/local/bin/{name}"));
        let labels = &image.config["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], version.as_str());
        assert_eq!(
            labels["org.opencontainers.image.licenses"],
            env!("CARGO_PKG_LICENSE")
        );
        assert!(
            labels["org.opencontainers.image.source"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://")),
            "{name}: source label"
        );
        let stdout = image.run_ok(&["--version"]);
        assert_eq!(
            stdout.trim(),
            format!("{name} {version}"),
            "{name} --version"
        );
    }

    // Nothing but the binary (and the agent's CA bundle): no shell, no libc, no loader.
    let dirs = ["usr/", "usr/local/", "usr/local/bin/"];
    let expected = |files: &[&str]| -> BTreeSet<String> {
        dirs.iter().chain(files).map(|s| (*s).to_owned()).collect()
    };
    assert_eq!(
        tree(&operator.rootfs),
        expected(&["usr/local/bin/vigil-operator"])
    );
    assert_eq!(
        tree(&agent.rootfs),
        expected(&[
            "etc/",
            "etc/ssl/",
            "etc/ssl/certs/",
            "etc/ssl/certs/ca-certificates.crt",
            "usr/local/bin/vigil-agent",
        ])
    );

    // The agent's CA bundle is Mozilla's roots as Debian ships them, in file-name order: no CA
    // added to the build machine (a proxy's, a company's) reaches the image.
    let mozilla = Path::new("/usr/share/ca-certificates/mozilla");
    let mut roots: Vec<PathBuf> = std::fs::read_dir(mozilla)
        .unwrap_or_else(|e| panic!("{}: {e}", mozilla.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    roots.sort();
    let expected_bundle: Vec<u8> = roots
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let bundle = std::fs::read(agent.rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        bundle == expected_bundle,
        "the agent's CA bundle is not exactly {}/*.crt",
        mozilla.display()
    );

    // The operator image renders the banking example, as its user, into a writable directory.
    let work = operator.rootfs.join("work");
    std::fs::create_dir(&work).unwrap();
    run_ok(
        Command::new(tool("cp"))
            .arg("-r")
            .arg(repo_root().join("examples/banking"))
            .arg(&work),
    );
    run_ok(Command::new(tool("chmod")).args(["0777"]).arg(&work));
    operator.run_ok(&["render", "-f", "/work/banking", "-o", "/work/out"]);
    let rendered = work.join("out/agent/banking-mobile-api.yaml");

    // The agent image accepts that config where the webhook mounts it.
    let config_dir = agent.rootfs.join(CONFIG_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(&rendered, config_dir.join(CONFIG_KEY))
        .unwrap_or_else(|e| panic!("{}: {e}", rendered.display()));
    let config_path = format!("{CONFIG_DIR}/{CONFIG_KEY}");
    let stdout = agent.run_ok(&["--check-config", &config_path]);
    assert!(
        stdout.contains("valid agent config for banking/mobile-api"),
        "{stdout}"
    );
    // And rejects a broken one: the check really reads the file.
    std::fs::write(config_dir.join("broken.yaml"), "app: {}\n").unwrap();
    let broken = agent.run(&["--check-config", &format!("{CONFIG_DIR}/broken.yaml")]);
    assert!(!broken.status.success(), "{}", output_text(&broken));

    // The layer is reproducible: the same files and epoch give the same digests.
    let writer = repo_root().join("scripts/write-oci-layout.py");
    let index = |out: &str| {
        let out = tmp.path().join(out);
        run_ok(
            Command::new(tool("python3"))
                .arg(&writer)
                .args(["--tag", "t", "--arch", "amd64", "--epoch", "0"])
                .args(["--user", "65532:65532", "--env", "PATH=/usr/local/bin"])
                .arg("--entrypoint")
                .arg(format!(
                    "{}:/usr/local/bin/vigil-agent",
                    agent.rootfs.join("usr/local/bin/vigil-agent").display()
                ))
                .arg("--file")
                .arg(format!(
                    "{}:/etc/ssl/certs/ca-certificates.crt",
                    agent
                        .rootfs
                        .join("etc/ssl/certs/ca-certificates.crt")
                        .display()
                ))
                .arg("--out")
                .arg(&out),
        );
        std::fs::read(out.join("index.json")).unwrap()
    };
    assert_eq!(index("again-1"), index("again-2"), "two writes differ");
}

/// The Containerfile (for users with an engine; no engine runs here) builds the images the
/// script writes: per stage the same entrypoint, numeric user and files, and the chart's
/// appVersion and the crates' licence as labels.
#[test]
fn containerfile_describes_the_same_images() {
    let text = std::fs::read_to_string(repo_root().join("Containerfile")).unwrap();
    // Continuation lines joined, so each instruction is one line.
    let text = text.replace("\\\n", " ");
    let stage = |name: &str| -> Vec<String> {
        let mut lines = text.lines().map(str::trim);
        let header = format!("FROM scratch AS {name}");
        lines
            .by_ref()
            .find(|l| *l == header)
            .unwrap_or_else(|| panic!("Containerfile: no stage `{header}`"));
        lines
            .take_while(|l| !l.starts_with("FROM "))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let version = app_version();
    for (name, user, files) in [
        (
            "operator",
            chart_operator_user(),
            vec!["/usr/local/bin/vigil-operator"],
        ),
        (
            "agent",
            format!("{AGENT_UID}:{AGENT_UID}"),
            vec![
                "/etc/ssl/certs/ca-certificates.crt",
                "/usr/local/bin/vigil-agent",
            ],
        ),
    ] {
        let lines = stage(name);
        let has = |wanted: &str| lines.iter().any(|l| l == wanted);
        let binary = format!("/usr/local/bin/vigil-{name}");
        assert!(has(&format!("ARG VERSION={version}")), "{name}: {lines:#?}");
        assert!(has(&format!("USER {user}")), "{name}: {lines:#?}");
        assert!(
            has(&format!("ENTRYPOINT [\"{binary}\"]")),
            "{name}: {lines:#?}"
        );
        let copied: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("COPY "))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        assert_eq!(copied, files, "{name}: files in the image");
        let labels = lines
            .iter()
            .find(|l| l.starts_with("LABEL "))
            .expect("LABEL");
        for label in [
            format!(
                "org.opencontainers.image.licenses=\"{}\"",
                env!("CARGO_PKG_LICENSE")
            ),
            "org.opencontainers.image.version=\"${VERSION}\"".to_owned(),
        ] {
            assert!(labels.contains(&label), "{name}: {label} in {labels}");
        }
    }
}
