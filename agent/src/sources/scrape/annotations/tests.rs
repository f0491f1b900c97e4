//! Tests of the downward API parser, the annotation precedence and the once-only reporting.

use super::*;

fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn config_endpoint() -> Endpoint {
    Endpoint {
        scheme: Scheme::Http,
        port: Ok(8080),
        path: "/metrics".into(),
    }
}

/// A file as the kubelet writes it (keys sorted, Go `%q` values, no final newline), with a
/// `kubectl` last-applied JSON value full of quotes and a newline: every value comes back
/// exactly as it is on the pod.
#[test]
fn parses_the_kubelet_format() {
    let file = concat!(
        r#"kubectl.kubernetes.io/last-applied-configuration="{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}\n""#,
        "\n",
        r#"kubernetes.io/config.seen="2026-11-21T10:00:00.000000000Z""#,
        "\n",
        r#"prometheus.io/path="/stats""#,
        "\n",
        r#"prometheus.io/port="9102""#,
        "\n",
        r#"prometheus.io/scrape="true""#,
    );
    let parsed = parse_downward_api(file);
    assert!(parsed.bad_lines.is_empty(), "{:?}", parsed.bad_lines);
    assert_eq!(
        parsed.entries,
        entries(&[
            (
                "kubectl.kubernetes.io/last-applied-configuration",
                "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}\n"
            ),
            (
                "kubernetes.io/config.seen",
                "2026-11-21T10:00:00.000000000Z"
            ),
            ("prometheus.io/path", "/stats"),
            ("prometheus.io/port", "9102"),
            ("prometheus.io/scrape", "true"),
        ])
    );
}

/// Real Go `%q` output in the kubelet's layout (see `testdata/SOURCE.txt`: control
/// characters, invisible and astral Unicode, backslashes, embedded JSON) decodes to exactly the
/// values Go was given.
#[test]
fn parses_real_go_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sources/scrape/annotations/testdata");
    let text = std::fs::read_to_string(dir.join("annotations")).unwrap();
    let want: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("annotations.json")).unwrap())
            .unwrap();
    let parsed = parse_downward_api(&text);
    assert!(parsed.bad_lines.is_empty(), "{:?}", parsed.bad_lines);
    assert_eq!(parsed.entries, want);
    assert_eq!(
        Overrides::from_annotations(&parsed.entries)
            .apply(&config_endpoint())
            .unwrap()
            .url()
            .as_deref(),
        Ok("https://127.0.0.1:9102/stats")
    );
}

/// Every escape Go's `strconv.Quote` writes (and `Unquote` reads) decodes to its character;
/// printable non-ASCII text, which Go leaves as is, passes through.
#[test]
fn go_escapes() {
    let cases: &[(&str, &str)] = &[
        (r#""""#, ""),
        (r#""plain""#, "plain"),
        (r#""say \"hi\"""#, "say \"hi\""),
        (r#""back\\slash""#, "back\\slash"),
        (r#""a\tb\nc\rd""#, "a\tb\nc\rd"),
        (r#""\a\b\f\v""#, "\u{7}\u{8}\u{c}\u{b}"),
        (r#""nul\x00 del\x7f""#, "nul\0 del\u{7f}"),
        (r#""\101\102""#, "AB"),
        (r#""zero\u200bwidth""#, "zero\u{200b}width"),
        (r#""\U0001f600""#, "\u{1f600}"),
        (r#""café 東京 😀""#, "café 東京 😀"),
        (r#""a=b=c""#, "a=b=c"),
    ];
    for (quoted, want) in cases {
        assert_eq!(unquote_go(quoted).as_deref(), Some(*want), "{quoted}");
    }
}

/// What is not one Go double-quoted literal is refused rather than half-decoded.
#[test]
fn malformed_quoted_strings_are_refused() {
    for quoted in [
        r#"""#,
        r#"unquoted"#,
        r#""unterminated"#,
        r#"'single'"#,
        r#""inner " quote""#,
        r#""trailing backslash\""#,
        r#""\q unknown escape""#,
        r#""\'""#,
        r#""\x4""#,
        r#""\xzz""#,
        r#""\u12""#,
        r#""\ud800""#,
        r#""\U00110000""#,
        r#""\400""#,
        r#""\xff""#,
        r#""a" trailing"#,
        r#" "leading space""#,
    ] {
        assert_eq!(unquote_go(quoted), None, "{quoted}");
    }
}

/// An empty file, or one of blank lines, holds no annotations and no bad lines; a final
/// newline (as a hand-written file has) is fine.
#[test]
fn empty_files() {
    for text in ["", "\n", "\n\n", "a=\"1\"\n"] {
        let parsed = parse_downward_api(text);
        assert!(parsed.bad_lines.is_empty(), "{text:?}");
        assert_eq!(parsed.entries.len(), usize::from(!text.trim().is_empty()));
    }
}

/// Lines that are not `key="value"` are listed by number and skipped; the good lines around
/// them still count, and a repeated key keeps its last value.
#[test]
fn garbage_lines_are_listed_and_skipped() {
    let text = [
        r#"prometheus.io/port="9102""#,
        "no equals sign",
        r#"key=unquoted"#,
        r#"="empty key""#,
        r#"spaced key="v""#,
        r#"prometheus.io/path="/stats"#,
        r#"bad="\q""#,
        "\u{0}\u{1}binary",
        r#"prometheus.io/path="/stats""#,
        r#"dup="first""#,
        r#"dup="second""#,
        "windows=\"crlf\"\r",
    ]
    .join("\n");
    let parsed = parse_downward_api(&text);
    assert_eq!(parsed.bad_lines, vec![2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        parsed.entries,
        entries(&[
            ("dup", "second"),
            ("prometheus.io/path", "/stats"),
            ("prometheus.io/port", "9102"),
            ("windows", "crlf"),
        ])
    );
}

/// Without annotations the config's endpoint is scraped; each valid annotation replaces its
/// part of it, also a port name the agent could not resolve.
#[test]
fn annotations_override_the_config() {
    let config = config_endpoint();
    let none = Overrides::from_annotations(&BTreeMap::new());
    assert_eq!(none, Overrides::default());
    assert_eq!(none.apply(&config), Some(config.clone()));

    let all = Overrides::from_annotations(&entries(&[
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "9102"),
        ("prometheus.io/path", "/stats"),
        ("prometheus.io/scheme", "https"),
        ("app.kubernetes.io/name", "checkout"),
    ]));
    assert!(all.invalid.is_empty());
    let endpoint = all.apply(&config).unwrap();
    assert_eq!(
        endpoint.url().as_deref(),
        Ok("https://127.0.0.1:9102/stats")
    );

    let port_only = Overrides::from_annotations(&entries(&[("prometheus.io/port", "65535")]));
    assert_eq!(
        port_only.apply(&config).unwrap().url().as_deref(),
        Ok("http://127.0.0.1:65535/metrics")
    );

    let named = Endpoint {
        port: Err("http-metrics".into()),
        ..config_endpoint()
    };
    assert_eq!(
        none.apply(&named).unwrap().url(),
        Err("http-metrics".to_owned())
    );
    assert_eq!(
        port_only.apply(&named).unwrap().url().as_deref(),
        Ok("http://127.0.0.1:65535/metrics")
    );
}

/// `prometheus.io/scrape: "false"` stops the scrape whatever the other annotations say;
/// `"true"` changes nothing.
#[test]
fn scrape_false_stops_the_scrape() {
    let config = config_endpoint();
    let off = Overrides::from_annotations(&entries(&[
        ("prometheus.io/scrape", "false"),
        ("prometheus.io/port", "9102"),
    ]));
    assert_eq!(off.apply(&config), None);
    let on = Overrides::from_annotations(&entries(&[("prometheus.io/scrape", "true")]));
    assert_eq!(on.apply(&config), Some(config));
}

/// Invalid values are ignored (the config wins) and each is described by annotation and
/// value.
#[test]
fn invalid_values_are_ignored_and_named() {
    let config = config_endpoint();
    for (key, value) in [
        ("prometheus.io/port", "abc"),
        ("prometheus.io/port", "0"),
        ("prometheus.io/port", "65536"),
        ("prometheus.io/port", "+80"),
        ("prometheus.io/port", " 80"),
        ("prometheus.io/port", ""),
        ("prometheus.io/path", "metrics"),
        ("prometheus.io/path", "/with space"),
        ("prometheus.io/scheme", "HTTPS"),
        ("prometheus.io/scheme", "ftp"),
        ("prometheus.io/scrape", "False"),
        ("prometheus.io/scrape", "no"),
    ] {
        let overrides = Overrides::from_annotations(&entries(&[(key, value)]));
        assert_eq!(
            overrides.apply(&config),
            Some(config.clone()),
            "{key}={value}"
        );
        assert_eq!(overrides.invalid.len(), 1, "{key}={value}");
        let message = overrides.invalid[0].describe();
        assert!(
            message.contains(key) && message.contains(&format!("{value:?}")),
            "{message}"
        );
    }
    // One bad annotation does not void the good ones.
    let mixed = Overrides::from_annotations(&entries(&[
        ("prometheus.io/port", "abc"),
        ("prometheus.io/path", "/stats"),
    ]));
    assert_eq!(
        mixed.apply(&config).unwrap().url().as_deref(),
        Ok("http://127.0.0.1:8080/stats")
    );
    // A long value is cut in the log line.
    let long = "x".repeat(500);
    let message = Overrides::from_annotations(&entries(&[("prometheus.io/port", &long)])).invalid
        [0]
    .describe();
    assert!(message.len() < 250, "{message}");
}

/// Writes `content` as the kubelet does: a new timestamped directory, then the `..data`
/// symlink swapped to it by rename; the `annotations` link points through `..data`.
fn kubelet_write(dir: &Path, generation: u32, content: &str) {
    let data = dir.join(format!("..2026_11_21_10_00_{generation:02}.{generation}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join(POD_ANNOTATIONS_FILE), content).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join(POD_ANNOTATIONS_FILE);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(Path::new("..data").join(POD_ANNOTATIONS_FILE), &link).unwrap();
    }
}

/// A missing file means the config as is; the kubelet's atomic `..data` swap is seen at the
/// next read; a missing file again falls back to the config.
#[test]
fn reads_the_kubelet_volume_and_its_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut pod = PodAnnotations::new(dir.path());
    let (overrides, problems) = pod.read_and_check();
    assert_eq!(overrides, Overrides::default());
    assert!(problems.is_empty());

    kubelet_write(dir.path(), 1, "prometheus.io/port=\"9102\"");
    let (overrides, problems) = pod.read_and_check();
    assert_eq!(overrides.port, Some(9102));
    assert!(problems.is_empty());

    kubelet_write(
        dir.path(),
        2,
        "prometheus.io/path=\"/stats\"\nprometheus.io/scrape=\"false\"",
    );
    let (overrides, _) = pod.read_and_check();
    assert_eq!(overrides.port, None);
    assert_eq!(overrides.path.as_deref(), Some("/stats"));
    assert_eq!(overrides.scrape, Some(false));

    std::fs::remove_file(dir.path().join(POD_ANNOTATIONS_FILE)).unwrap();
    assert_eq!(pod.read_and_check(), (Overrides::default(), Vec::new()));
}

/// Each invalid value and each bad file is reported once, not at every scrape; a new invalid
/// value, or one that comes back after being fixed, is reported again.
#[test]
fn problems_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(POD_ANNOTATIONS_FILE);
    let mut pod = PodAnnotations::new(dir.path());
    let categories = |problems: Vec<Problem>| -> Vec<&'static str> {
        problems.into_iter().map(|p| p.category).collect()
    };

    std::fs::write(&file, "prometheus.io/port=\"abc\"").unwrap();
    let (_, problems) = pod.read_and_check();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].category, "ScrapeAnnotationInvalid");
    assert!(
        problems[0].message.contains("prometheus.io/port")
            && problems[0].message.contains("\"abc\""),
        "{}",
        problems[0].message
    );
    assert!(pod.read_and_check().1.is_empty());

    std::fs::write(&file, "prometheus.io/port=\"xyz\"\nother=\"1\"").unwrap();
    assert_eq!(
        categories(pod.read_and_check().1),
        ["ScrapeAnnotationInvalid"]
    );
    std::fs::write(&file, "prometheus.io/port=\"9102\"").unwrap();
    assert!(pod.read_and_check().1.is_empty());
    std::fs::write(&file, "prometheus.io/port=\"abc\"").unwrap();
    assert_eq!(
        categories(pod.read_and_check().1),
        ["ScrapeAnnotationInvalid"]
    );

    std::fs::write(&file, "garbage\nprometheus.io/path=\"/stats\"").unwrap();
    let (overrides, problems) = pod.read_and_check();
    assert_eq!(overrides.path.as_deref(), Some("/stats"));
    assert_eq!(categories(problems.clone()), ["ScrapePodInfoUnreadable"]);
    assert!(
        problems[0].message.contains("[1]"),
        "{}",
        problems[0].message
    );
    assert!(
        !problems[0].message.contains("garbage"),
        "line contents stay out of logs"
    );
    std::fs::write(&file, "garbage\nprometheus.io/path=\"/other\"").unwrap();
    assert!(pod.read_and_check().1.is_empty());

    // A directory where the file should be: unreadable, reported once, config applies.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let (overrides, problems) = pod.read_and_check();
    assert_eq!(overrides, Overrides::default());
    assert_eq!(categories(problems), ["ScrapePodInfoUnreadable"]);
    assert!(pod.read_and_check().1.is_empty());
}
