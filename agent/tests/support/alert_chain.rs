//! The whole crash-alert chain on loopback, as a cluster runs it: the banking example rendered
//! by `vigil-operator`'s own renderer, the real `vigil-agent` tailing a pod's CRI log file, a real
//! Prometheus scraping the agent's crash page with the rendered job's settings and evaluating
//! the rendered rule files, and a real Alertmanager running the rendered `alertmanager.yml` —
//! its receivers pointed at local listeners that record what each channel gets (Slack,
//! PagerDuty and webhook over HTTP, e-mail over SMTP).
//!
//! Stand-ins, and what they do not model: the operator's release series (which deploy
//! preceded a crash) are served by a small HTTP page with the operator's metric names, as its
//! `/metrics` shows them, because the operator needs an API server to observe rollouts; the
//! Kubernetes pod discovery of the rendered scrape jobs is replaced by static targets carrying
//! the labels its relabelling gives (Debian's Prometheus is built without Kubernetes discovery).
#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support: each user takes part of it, and a failed step fails the run"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::support::{free_port, wait_until};

/// The example's namespace and app.
pub const NAMESPACE: &str = "banking";
pub const APP: &str = "mobile-api";

/// One notification a receiver got.
#[derive(Clone, Debug)]
pub struct Notification {
    /// `slack`, `pagerduty`, `webhook` or `email`.
    pub channel: String,
    /// The Alertmanager receiver (`banking/mobile-api-crashes/mobile-oncall`), or for e-mail
    /// the recipient.
    pub receiver: String,
    /// The request body (JSON) or the e-mail message.
    pub body: String,
    pub at: Instant,
}

type Inbox = Arc<Mutex<Vec<Notification>>>;

/// `GET` over plain HTTP; (status, body).
fn http(method: &str, addr: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body).
fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split(' ').nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}

/// Records every POST as a notification: `/<channel>/<receiver…>`.
fn serve_receivers(listener: TcpListener, inbox: Inbox) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let Some((path, body)) = read_request(&mut stream) else {
                    return;
                };
                let at = Instant::now();
                let (channel, receiver) = path
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or(("unknown", ""));
                inbox.lock().unwrap().push(Notification {
                    channel: channel.to_owned(),
                    receiver: receiver.to_owned(),
                    body,
                    at,
                });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
}

/// A minimal SMTP server: records each message with its recipients.
fn serve_smtp(listener: TcpListener, inbox: Inbox) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut say = |text: &str| {
                    let _ = writer.write_all(text.as_bytes());
                };
                say("220 localhost ESMTP\r\n");
                let mut recipients = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let command = line.trim_end().to_ascii_uppercase();
                    if command.starts_with("EHLO") || command.starts_with("HELO") {
                        say("250 localhost\r\n");
                    } else if command.starts_with("RCPT TO:") {
                        recipients.push(
                            line.trim_end()[8..]
                                .trim_matches(|c| c == '<' || c == '>' || c == ' ')
                                .to_owned(),
                        );
                        say("250 OK\r\n");
                    } else if command.starts_with("DATA") {
                        say("354 go ahead\r\n");
                        let mut message = String::new();
                        loop {
                            let mut data = String::new();
                            if reader.read_line(&mut data).unwrap_or(0) == 0 {
                                return;
                            }
                            if data == ".\r\n" || data == ".\n" {
                                break;
                            }
                            message.push_str(&data);
                        }
                        let at = Instant::now();
                        let mut inbox = inbox.lock().unwrap();
                        for to in &recipients {
                            inbox.push(Notification {
                                channel: "email".to_owned(),
                                receiver: to.clone(),
                                body: decode_quoted_printable(&message),
                                at,
                            });
                        }
                        recipients.clear();
                        say("250 OK\r\n");
                    } else if command.starts_with("QUIT") {
                        say("221 bye\r\n");
                        return;
                    } else {
                        say("250 OK\r\n");
                    }
                }
            });
        }
    });
}

/// E-mail bodies come quoted-printable; enough decoding to search them for text.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The release series the operator exports for the example's two versions.
fn serve_release_series(listener: TcpListener) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let page = format!(
        "# TYPE vigil_app_release_info gauge\n\
         vigil_app_release_info{{namespace=\"{NAMESPACE}\",app=\"{APP}\",version=\"17.2\",revision=\"abc123\",image=\"registry.example.com/bank/mobile-api:17.2\"}} 1\n\
         vigil_app_release_info{{namespace=\"{NAMESPACE}\",app=\"{APP}\",version=\"17.3\",revision=\"def456\",image=\"registry.example.com/bank/mobile-api:17.3\"}} 1\n\
         # TYPE vigil_app_release_timestamp_seconds gauge\n\
         vigil_app_release_timestamp_seconds{{namespace=\"{NAMESPACE}\",app=\"{APP}\",version=\"17.2\",revision=\"abc123\"}} {}\n\
         vigil_app_release_timestamp_seconds{{namespace=\"{NAMESPACE}\",app=\"{APP}\",version=\"17.3\",revision=\"def456\"}} {}\n",
        now - 3600,
        now - 600
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = read_request(&mut stream);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
}

/// A child process killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &str, args: &[String], log: PathBuf) -> Process {
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap_or_else(|e| panic!("{program} ({e}): run ./scripts/install-test-tools.sh"));
    Process { child, log }
}

fn wait_ready(what: &str, addr: &str, path: &str, log: &Path) {
    let ready = wait_until(Duration::from_secs(30), || {
        http("GET", addr, path, "").is_some_and(|(status, _)| status == 200)
    });
    assert!(
        ready,
        "{what} not ready on {addr}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// One pod of the app: its log file and its agent.
pub struct Pod {
    pub name: String,
    pub version: String,
    log_file: PathBuf,
    pub admin: SocketAddr,
    _agent: Process,
}

/// The running chain.
pub struct Chain {
    pub dir: tempfile::TempDir,
    pub inbox: Inbox,
    pub alertmanager: String,
    pub prometheus: String,
    pods: Vec<Pod>,
    _processes: Vec<Process>,
}

/// The banking example with escalation steps after `escalation` (instead of 15m and 45m),
/// rendered into `out` for Alertmanager 0.25.
fn render_banking(work: &Path, escalation: [&str; 2]) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/banking");
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("after: 15m", &format!("after: {}", escalation[0]))
            .replace("after: 45m", &format!("after: {}", escalation[1]));
        std::fs::write(manifests.join(path.file_name().unwrap()), text).unwrap();
    }
    let loaded = vigil_operator::manifests::load(&[manifests]).unwrap_or_else(|problems| {
        panic!("the example does not load: {problems:?}");
    });
    let rendered = vigil_operator::bundle::render(
        &loaded.inventory,
        vigil_operator::bundle::Options {
            alertmanager: vigil_operator::render::alertmanager::AlertmanagerVersion::V0_25,
            ..Default::default()
        },
    )
    .unwrap();
    let out = work.join("out");
    vigil_operator::bundle::write(&rendered, &out, false).unwrap();
    out
}

/// The rendered `alertmanager.yml` with every receiver pointed at the local listeners:
/// Slack, PagerDuty and webhooks at `http_port` (path `/<channel>/<receiver>`), e-mail at the
/// SMTP server on `smtp_port`. Routes, grouping, timings and message templates stay as
/// rendered.
fn local_receivers(rendered: &str, http_port: u16, smtp_port: u16) -> String {
    let mut config: Value = serde_yaml::from_str(rendered).unwrap();
    config["global"]["smtp_smarthost"] = json!(format!("127.0.0.1:{smtp_port}"));
    config["global"]["smtp_require_tls"] = json!(false);
    // The platform's base configuration brings the sender; rendering invents none.
    config["global"]["smtp_from"] = json!("vigil@alerts.test");
    let base = format!("http://127.0.0.1:{http_port}");
    for receiver in config["receivers"].as_array_mut().unwrap() {
        let name = receiver["name"].as_str().unwrap().to_owned();
        for slack in receiver["slack_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            slack.as_object_mut().unwrap().remove("api_url_file");
            slack["api_url"] = json!(format!("{base}/slack/{name}"));
        }
        for pd in receiver["pagerduty_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            pd.as_object_mut().unwrap().remove("routing_key_file");
            pd["routing_key"] = json!("test-routing-key");
            pd["url"] = json!(format!("{base}/pagerduty/{name}"));
        }
        for hook in receiver["webhook_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            hook.as_object_mut().unwrap().remove("url_file");
            hook["url"] = json!(format!("{base}/webhook/{name}"));
        }
        for mail in receiver["email_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            mail.as_object_mut().unwrap().remove("auth_password_file");
        }
    }
    serde_yaml::to_string(&config).unwrap()
}

impl Chain {
    /// Starts receivers, Alertmanager, Prometheus and the release page; pods come with
    /// [`Chain::add_pod`].
    pub fn start(escalation: [&str; 2]) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let out = render_banking(work, escalation);
        let inbox: Inbox = Arc::default();

        let receivers = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_port = receivers.local_addr().unwrap().port();
        serve_receivers(receivers, inbox.clone());
        let smtp = TcpListener::bind("127.0.0.1:0").unwrap();
        let smtp_port = smtp.local_addr().unwrap().port();
        serve_smtp(smtp, inbox.clone());
        let releases = TcpListener::bind("127.0.0.1:0").unwrap();
        let releases_addr = releases.local_addr().unwrap();
        serve_release_series(releases);

        let rendered = std::fs::read_to_string(out.join("alertmanager/alertmanager.yml")).unwrap();
        let am_config = work.join("alertmanager.yml");
        std::fs::write(&am_config, local_receivers(&rendered, http_port, smtp_port)).unwrap();
        let alertmanager = format!("127.0.0.1:{}", free_port());
        let am = spawn(
            "prometheus-alertmanager",
            &[
                format!("--config.file={}", am_config.display()),
                format!("--storage.path={}", work.join("am-data").display()),
                format!("--web.listen-address={alertmanager}"),
                "--cluster.listen-address=".to_owned(),
            ],
            work.join("alertmanager.log"),
        );
        wait_ready("alertmanager", &alertmanager, "/-/ready", &am.log);

        let prometheus = format!("127.0.0.1:{}", free_port());
        let chain = Chain {
            inbox,
            alertmanager,
            prometheus,
            pods: Vec::new(),
            _processes: vec![am],
            dir,
        };
        chain.write_prometheus_config(&out, releases_addr);
        let prom = spawn(
            "prometheus",
            &[
                format!(
                    "--config.file={}",
                    chain.dir.path().join("prometheus.yml").display()
                ),
                format!(
                    "--storage.tsdb.path={}",
                    chain.dir.path().join("prom-data").display()
                ),
                format!("--web.listen-address={}", chain.prometheus),
                "--web.enable-lifecycle".to_owned(),
            ],
            chain.dir.path().join("prometheus.log"),
        );
        wait_ready("prometheus", &chain.prometheus, "/-/ready", &prom.log);
        let mut chain = chain;
        chain._processes.push(prom);
        chain
    }

    /// `prometheus.yml`: the rendered rule files, the local Alertmanager, the crash job of
    /// the rendered scrape configs (its path, interval and label handling; static targets in
    /// place of pod discovery) and the operator's job for the release series.
    fn write_prometheus_config(&self, out: &Path, releases: SocketAddr) {
        let rendered: Value = serde_yaml::from_str(
            &std::fs::read_to_string(out.join("prometheus/prometheus.yml")).unwrap(),
        )
        .unwrap();
        let job = |name: &str| {
            rendered["scrape_configs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["job_name"] == name)
                .unwrap_or_else(|| panic!("no {name} job rendered"))
                .clone()
        };
        let mut crashes = job(&format!("vigil-crashes/{NAMESPACE}/{APP}"));
        let crash_targets: Vec<Value> = self
            .pods
            .iter()
            .map(|p| {
                json!({
                    "targets": [p.admin.to_string()],
                    "labels": {"namespace": NAMESPACE, "app": APP, "pod": p.name},
                })
            })
            .collect();
        let crashes = crashes.as_object_mut().unwrap();
        crashes.remove("kubernetes_sd_configs");
        crashes.remove("relabel_configs");
        crashes.insert("static_configs".into(), Value::Array(crash_targets));
        let mut operator = job("vigil-operator");
        let operator = operator.as_object_mut().unwrap();
        operator.remove("kubernetes_sd_configs");
        operator.remove("relabel_configs");
        operator.insert("scrape_interval".into(), json!("2s"));
        operator.insert(
            "static_configs".into(),
            json!([{ "targets": [releases.to_string()] }]),
        );
        let config = json!({
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "rule_files": [out.join("prometheus/rules/*.yml").display().to_string()],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]},
            "scrape_configs": [Value::Object(crashes.clone()), Value::Object(operator.clone())],
        });
        std::fs::write(
            self.dir.path().join("prometheus.yml"),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
    }

    /// Starts a pod of `version`: its log directory and its agent, and points Prometheus'
    /// crash job at it (reloading the config).
    pub fn add_pod(&mut self, name: &str, version: &str) {
        let work = self.dir.path().join(name);
        let container = work.join("pods/api");
        std::fs::create_dir_all(&container).unwrap();
        let log_file = container.join("0.log");
        std::fs::write(&log_file, "").unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "version: 1\napp:\n  namespace: {NAMESPACE}\n  name: {APP}\n  clientType: banking\n  releaseSource: label\n  versionLabel: app.kubernetes.io/version\n\
             listen:\n  otlpGrpc: 127.0.0.1:{}\n  otlpHttp: 127.0.0.1:{}\n  admin: {admin}\n\
             traces:\n  enabled: false\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\n\
             redaction:\n  detectors: [creditCard, iban, email, phone, bearerToken, jwt]\n\
             buffer:\n  path: {}\n  maxBytes: 67108864\n  whenFull: block\n\
             logs:\n  podLogDir: {}\n  format: text\n  multiline: true\n  checkpointDir: {}\n",
            free_port(),
            free_port(),
            work.join("buffer").display(),
            work.join("pods").display(),
            work.join("checkpoints").display(),
        );
        let config_path = work.join("agent.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = work.join("agent.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
            .arg("--config")
            .arg(&config_path)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_UID", format!("uid-{name}"))
            .env("NODE_NAME", "node-a")
            .env("VIGIL_APP_VERSION", version)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("vigil-agent starts");
        let agent = Process {
            child,
            log: log.clone(),
        };
        wait_ready("vigil-agent", &admin.to_string(), "/readyz", &log);
        self.pods.push(Pod {
            name: name.to_owned(),
            version: version.to_owned(),
            log_file,
            admin,
            _agent: agent,
        });
        let out = self.dir.path().join("out");
        // The release page's address is in the current config; keep it.
        let current: Value = serde_yaml::from_str(
            &std::fs::read_to_string(self.dir.path().join("prometheus.yml")).unwrap(),
        )
        .unwrap();
        let releases: SocketAddr = current["scrape_configs"][1]["static_configs"][0]["targets"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        self.write_prometheus_config(&out, releases);
        let reloaded = http("POST", &self.prometheus, "/-/reload", "");
        assert_eq!(reloaded.map(|r| r.0), Some(200), "prometheus reload");
        // Wait until Prometheus scrapes the new pod.
        let query = format!("up{{pod=\"{name}\"}} == 1");
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if !self.query(&query).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus does not scrape {name}");
    }

    /// Instant query against Prometheus; the result array.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        http(
            "GET",
            &self.prometheus,
            &format!("/api/v1/query?query={encoded}"),
            "",
        )
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
    }

    /// Writes a Java crash into `pod`'s container log (CRI, stderr), followed by an ordinary
    /// line; `exception` and `method` decide the fingerprint. Returns when it was written.
    pub fn crash(&self, pod: &str, exception: &str, method: &str, message: &str) -> Instant {
        let pod = self.pods.iter().find(|p| p.name == pod).unwrap();
        let stamp = "2026-12-06T10:00:00.000000000Z";
        let trace = [
            format!("{exception}: {message}"),
            format!("\tat com.bank.mobile.ledger.Ledger.{method}(Ledger.java:42)"),
            "\tat com.bank.mobile.api.PaymentsController.pay(PaymentsController.java:17)"
                .to_owned(),
            "\tat java.base/java.lang.Thread.run(Thread.java:833)".to_owned(),
        ];
        let mut text = String::new();
        for line in &trace {
            text.push_str(&format!("{stamp} stderr F {line}\n"));
        }
        text.push_str(&format!("{stamp} stdout F request served in 12ms\n"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&pod.log_file)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.flush().unwrap();
        Instant::now()
    }

    /// Notifications received so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.inbox.lock().unwrap().clone()
    }

    /// The first notification after `since` that `matches`, waiting up to `deadline`.
    pub fn wait_for(
        &self,
        since: Instant,
        deadline: Duration,
        matches: impl Fn(&Notification) -> bool,
    ) -> Option<Notification> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(n) = self
                .notifications()
                .into_iter()
                .filter(|n| n.at >= since && matches(n))
                .min_by_key(|n| n.at)
            {
                return Some(n);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates an Alertmanager silence (an acknowledgement) for `alertname` in the namespace.
    pub fn silence(&self, alertname: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let iso = |secs: u64| {
            let out = Command::new("date")
                .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let body = json!({
            "matchers": [
                {"name": "alertname", "value": alertname, "isRegex": false},
                {"name": "namespace", "value": NAMESPACE, "isRegex": false},
            ],
            "startsAt": iso(now - 1),
            "endsAt": iso(now + 3600),
            "createdBy": "on-call engineer",
            "comment": "acknowledged: looking into it",
        });
        let answer = http(
            "POST",
            &self.alertmanager,
            "/api/v2/silences",
            &body.to_string(),
        );
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(200),
            "silence: {answer:?}"
        );
    }

    /// The logs of the processes, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["alertmanager.log", "prometheus.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("\n--- {name} (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        for pod in &self.pods {
            let text = std::fs::read_to_string(&pod._agent.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            out.push_str(&format!("\n--- agent of {} (last lines)\n", pod.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// p-th percentile (0–100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
