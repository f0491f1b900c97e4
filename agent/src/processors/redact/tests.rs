//! Tests of redaction: true positives and true negatives for every detector, configured
//! patterns, and the places in events and OTLP batches that get redacted.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use vigil_crds::monitored_app::RedactionPattern;

use super::*;
use crate::event::Stream;

fn redactor(detectors: Vec<Detector>) -> Redactor {
    Redactor::new(&RedactionConfig {
        detectors,
        patterns: Vec::new(),
    })
    .unwrap()
}

fn all() -> Redactor {
    redactor(Detector::all())
}

/// Asserts each text comes out as expected with only `detector` on, and with all on.
fn check(detector: Detector, cases: &[(&str, &str)]) {
    let one = redactor(vec![detector]);
    let every = all();
    for (input, expected) in cases {
        let got = one.redact(input).unwrap_or_else(|| input.to_string());
        assert_eq!(&got, expected, "{detector:?} on {input:?}");
        let got = every.redact(input).unwrap_or_else(|| input.to_string());
        assert_eq!(&got, expected, "all detectors on {input:?}");
    }
}

/// Asserts nothing is found in each text, by any detector.
fn clean(texts: &[&str]) {
    let every = all();
    for text in texts {
        assert_eq!(every.redact(text), None, "{text:?}");
    }
}

/// Card numbers that pass the Luhn check are redacted, written together or grouped.
#[test]
fn card_numbers_found() {
    check(
        Detector::CreditCard,
        &[
            (
                "paid with 4111111111111111 ok",
                "paid with [REDACTED:card] ok",
            ),
            ("card=4111-1111-1111-1111;", "card=[REDACTED:card];"),
            (
                "card 5500 0000 0000 0004 expired",
                "card [REDACTED:card] expired",
            ),
            ("amex 378282246310005.", "amex [REDACTED:card]."),
            (
                "\"pan\":\"6011111111111117\"",
                "\"pan\":\"[REDACTED:card]\"",
            ),
            ("visa19 4000000000000000006", "visa19 [REDACTED:card]"),
            ("pan 4111111111111111/12/27", "pan [REDACTED:card]/12/27"),
        ],
    );
}

/// Numbers that are not card numbers stay: failing Luhn (order ids), too short or too long,
/// part of a word or decimal, timestamps, and epoch milliseconds.
#[test]
fn card_numbers_not_found() {
    clean(&[
        "order 4111111111111112 shipped",
        "order id 20240115103000123",
        "ts=1700000000123 took 12ms",
        "value 4111111111111111111111 too long",
        "id=abc4111111111111111",
        "ratio 0.4111111111111111",
        "2024-01-15T10:30:00.123456789Z started",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
    ]);
}

/// IBANs with a valid mod-97 check are redacted, written together or in groups of four.
#[test]
fn ibans_found() {
    check(
        Detector::Iban,
        &[
            (
                "to DE89370400440532013000 today",
                "to [REDACTED:iban] today",
            ),
            ("iban: GB82 WEST 1234 5698 7654 32", "iban: [REDACTED:iban]"),
            ("FR1420041010050500013M02606,", "[REDACTED:iban],"),
            ("nl91abna0417164300", "[REDACTED:iban]"),
        ],
    );
}

/// Strings shaped like IBANs with a wrong check, a wrong length or an unknown country stay.
#[test]
fn ibans_not_found() {
    clean(&[
        "to DE89370400440532013001 today",
        "to DE8937040044053201300 short",
        "code ZZ89370400440532013000",
        "sku AB12CD34EF56GH78",
    ]);
}

/// E-mail addresses are redacted, also with plus tags, subdomains and inside URLs' userinfo.
#[test]
fn emails_found() {
    check(
        Detector::Email,
        &[
            (
                "user jane.doe+shop@example.co.uk logged in",
                "user [REDACTED:email] logged in",
            ),
            ("<ops@mail.example.org>.", "<[REDACTED:email]>."),
            (
                "{\"email\":\"a_b-c@x-y.io\"}",
                "{\"email\":\"[REDACTED:email]\"}",
            ),
        ],
    );
}

/// An `@` that is not part of an address stays: decorators, handles, versions, no TLD.
#[test]
fn emails_not_found() {
    clean(&[
        "@Override public void run()",
        "mention @jane please",
        "npm i left-pad@1.3.0",
        "user@localhost rejected",
        "a@b.c",
    ]);
}

/// Phone numbers in international and common national formats are redacted.
#[test]
fn phones_found() {
    check(
        Detector::Phone,
        &[
            ("call +44 20 7946 0958 now", "call [REDACTED:phone] now"),
            ("tel:+14155552671", "tel:[REDACTED:phone]"),
            ("+1 (415) 555-2671", "[REDACTED:phone]"),
            ("+49-30-1234567", "[REDACTED:phone]"),
            ("phone (415) 555-2671.", "phone [REDACTED:phone]."),
            ("phone 415-555-2671", "phone [REDACTED:phone]"),
            ("phone 415.555.2671", "phone [REDACTED:phone]"),
            ("Tel. 030 12345678", "Tel. [REDACTED:phone]"),
            ("portable 06 12 34 56 78", "portable [REDACTED:phone]"),
            ("call 020 7946 0958", "call [REDACTED:phone]"),
        ],
    );
}

/// National numbers whose trunk-prefixed first group has four digits (German mobile and
/// city numbers, freephone) are redacted: the prescan must not take a 4-digit run for the
/// last group of a North American number only.
#[test]
fn phones_with_four_digit_trunk_group_found() {
    check(
        Detector::Phone,
        &[
            ("call 0171 1234567", "call [REDACTED:phone]"),
            ("mobil 0151 23456789", "mobil [REDACTED:phone]"),
            ("Tel. 0711-1234567", "Tel. [REDACTED:phone]"),
            ("Tel: 0221 1234 5678", "Tel: [REDACTED:phone]"),
            ("free 0800 1234567 now", "free [REDACTED:phone] now"),
        ],
    );
}

/// Two IBANs in one line, one grouped (whose last groups also look like a national phone
/// number) and one written together, are both redacted, with only the IBAN detector and with
/// all of them; and the phone prescan agrees with the phone detector on that line.
#[test]
fn grouped_and_compact_ibans_in_one_line() {
    let line = "IBAN DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432";
    check(
        Detector::Iban,
        &[(line, "IBAN [REDACTED:iban] or [REDACTED:iban]")],
    );
    let mut phones = Vec::new();
    detectors::phones(line.as_bytes(), &mut phones);
    assert!(!phones.is_empty());
    assert!(detectors::prescan(line.as_bytes()).phone);
}

/// Timestamps, dates, IP addresses, versions, durations, ids and epoch seconds stay.
#[test]
fn phones_not_found() {
    clean(&[
        "2024-01-15 10:30:00,123 INFO started",
        "at 2024-01-15T10:30:00+01:00 done",
        "client 192.168.100.200 port 8080",
        "peer 10.0.0.1:5432",
        "version 1.22.333 and 17.2.0-rc1",
        "took 1234567890 ns",
        "epoch 1700000000",
        "date 01/02/2024 10:30",
        "range 100-200-300",
        "math 3+4123456789",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "offset +0100 zone",
    ]);
}

/// Bearer tokens and `Authorization` credentials are redacted; the scheme word stays.
#[test]
fn tokens_found() {
    check(
        Detector::BearerToken,
        &[
            (
                "Authorization: Bearer abc123.DEF456-ghi789",
                "Authorization: Bearer [REDACTED:token]",
            ),
            (
                "sent bearer sk_live_51HxYz0123 to upstream",
                "sent bearer [REDACTED:token] to upstream",
            ),
            (
                "authorization: Basic dXNlcjpwYXNzd29yZA==",
                "authorization: Basic [REDACTED:token]",
            ),
            (
                "{\"authorization\":\"Token 9f8e7d6c5b4a\"}",
                "{\"authorization\":\"Token [REDACTED:token]\"}",
            ),
            (
                "Proxy-Authorization=s3cr3t,next",
                "Proxy-Authorization=[REDACTED:token],next",
            ),
        ],
    );
}

/// Prose about bearers and authorization stays.
#[test]
fn tokens_not_found() {
    clean(&[
        "the bearer of this letter",
        "Bearer authentication failed",
        "authorization failed for user",
        "token_type: Bearer",
    ]);
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/// JSON Web Tokens are redacted whole, also unsigned ones and inside other text.
#[test]
fn jwts_found() {
    let one = redactor(vec![Detector::Jwt]);
    assert_eq!(
        one.redact(&format!("token={JWT}&x=1")).unwrap(),
        "token=[REDACTED:jwt]&x=1"
    );
    assert_eq!(
        one.redact("id eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. end")
            .unwrap(),
        "id [REDACTED:jwt] end"
    );
    // With every detector, a bearer JWT becomes one replacement.
    assert_eq!(
        all()
            .redact(&format!("Authorization: Bearer {JWT}"))
            .unwrap(),
        "Authorization: Bearer [REDACTED:jwt]"
    );
}

/// Base64 that is not a JWT stays.
#[test]
fn jwts_not_found() {
    clean(&[
        "payload eyJhbGciOiJIUzI1NiJ9 alone",
        "keyJson.value.x",
        "file eyJ.txt",
    ]);
}

/// Clean, ordinary log lines are left alone and cost no allocation (`None`).
#[test]
fn ordinary_lines_are_clean() {
    clean(&[
        "",
        "GET /api/v1/orders/12345 200 12.3ms",
        "2024-01-15T10:30:00.123Z INFO  [main] c.e.Shop - started in 2.345 s (pid 4242)",
        "level=info msg=\"cache warmed\" entries=100000 duration=1.5s",
        "Exception in thread \"main\" java.lang.NullPointerException: x is null",
        "\tat com.example.Shop.checkout(Shop.java:42)",
    ]);
}

/// Several secrets in one text are each replaced, the text between them kept.
#[test]
fn several_finds_in_one_text() {
    let text = "user=jane@example.com card=4111 1111 1111 1111 iban=DE89370400440532013000 ok";
    assert_eq!(
        all().redact(text).unwrap(),
        "user=[REDACTED:email] card=[REDACTED:card] iban=[REDACTED:iban] ok"
    );
}

/// Configured patterns use their replacement literally; detectors can be switched off;
/// overlapping finds merge so nothing of either survives.
#[test]
fn configured_patterns() {
    let r = Redactor::new(&RedactionConfig {
        detectors: vec![Detector::Email],
        patterns: vec![
            RedactionPattern {
                name: "customer-id".into(),
                regex: r"CUST-\d{6}".into(),
                replacement: "[customer $1]".into(),
            },
            RedactionPattern {
                name: "domain".into(),
                regex: r"example\.com\S*".into(),
                replacement: "[REDACTED]".into(),
            },
        ],
    })
    .unwrap();
    assert_eq!(
        r.redact("CUST-123456 paid 4111111111111111").unwrap(),
        "[customer $1] paid 4111111111111111"
    );
    assert_eq!(
        r.redact("to jane@example.com.au").unwrap(),
        "to [REDACTED:email]"
    );
    assert_eq!(r.redact("nothing here"), None);
    let counts = r.redactions();
    assert!(counts.contains(&("customer-id", 1)), "{counts:?}");
    assert!(counts.contains(&("email", 1)), "{counts:?}");
}

/// An invalid pattern is rejected naming its index and name.
#[test]
fn invalid_pattern_is_an_error() {
    let error = Redactor::new(&RedactionConfig {
        detectors: Vec::new(),
        patterns: vec![RedactionPattern {
            name: "broken".into(),
            regex: "(unclosed".into(),
            replacement: "[REDACTED]".into(),
        }],
    })
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "redaction.patterns[0] (broken): invalid regular expression"
    );
}

/// A log event's message and attribute values are redacted; keys are not.
#[test]
fn event_message_and_attributes() {
    let mut event = LogEvent::line("app", Stream::Stdout, 1, "login jane@example.com");
    event
        .attributes
        .push(("email".into(), "joe@example.org".into()));
    event.attributes.push(("status".into(), "ok".into()));
    all().redact_event(&mut event);
    assert_eq!(event.message, "login [REDACTED:email]");
    assert_eq!(
        event.attributes,
        vec![
            ("email".to_owned(), "[REDACTED:email]".to_owned()),
            ("status".to_owned(), "ok".to_owned())
        ]
    );
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..KeyValue::default()
    }
}

fn as_string(value: &AnyValue) -> &str {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// OTLP log bodies (string, nested key-value lists and arrays) and log attributes are
/// redacted; resource attributes are not.
#[test]
fn otlp_logs() {
    let body = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("user", string("jane@example.com")),
                kv(
                    "cards",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![string("4111111111111111"), string("none")],
                        })),
                    },
                ),
            ],
        })),
    };
    let mut batch = Batch::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("owner", string("ops@example.com"))],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        body: Some(body),
                        attributes: vec![kv("phone", string("+44 20 7946 0958"))],
                        ..LogRecord::default()
                    },
                    LogRecord {
                        body: Some(string("Bearer abcdef123456")),
                        ..LogRecord::default()
                    },
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    });
    all().redact_batch(&mut batch);
    let Batch::Logs(request) = batch else {
        unreachable!()
    };
    let rl = &request.resource_logs[0];
    assert_eq!(
        as_string(
            rl.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .unwrap()
        ),
        "ops@example.com"
    );
    let records = &rl.scope_logs[0].log_records;
    let Some(any_value::Value::KvlistValue(list)) = &records[0].body.as_ref().unwrap().value else {
        panic!("body changed shape")
    };
    assert_eq!(
        as_string(list.values[0].value.as_ref().unwrap()),
        "[REDACTED:email]"
    );
    let Some(any_value::Value::ArrayValue(array)) = &list.values[1].value.as_ref().unwrap().value
    else {
        panic!("array changed shape")
    };
    assert_eq!(as_string(&array.values[0]), "[REDACTED:card]");
    assert_eq!(as_string(&array.values[1]), "none");
    assert_eq!(
        as_string(records[0].attributes[0].value.as_ref().unwrap()),
        "[REDACTED:phone]"
    );
    assert_eq!(
        as_string(records[1].body.as_ref().unwrap()),
        "Bearer [REDACTED:token]"
    );
}

/// Span attributes and span event attributes are redacted.
#[test]
fn otlp_spans() {
    let mut batch = Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "checkout".into(),
                    attributes: vec![kv("enduser.id", string("jane@example.com"))],
                    events: vec![Event {
                        name: "exception".into(),
                        attributes: vec![kv(
                            "exception.message",
                            string("card 4111 1111 1111 1111 declined"),
                        )],
                        ..Event::default()
                    }],
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    });
    all().redact_batch(&mut batch);
    let Batch::Traces(request) = batch else {
        unreachable!()
    };
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        as_string(span.attributes[0].value.as_ref().unwrap()),
        "[REDACTED:email]"
    );
    assert_eq!(
        as_string(span.events[0].attributes[0].value.as_ref().unwrap()),
        "card [REDACTED:card] declined"
    );
    assert_eq!(span.name, "checkout");
}

/// Ordinary log lines — timestamps, durations, ids, status codes — trip no detector's
/// trigger, so they cost only the prescan.
#[test]
fn ordinary_lines_trip_no_trigger() {
    for line in [
        "2024-05-01 12:34:56.789 INFO [http-nio-8080-exec-3] c.e.shop.OrderService - GET /api/orders/12345 completed status=200 in 123 ms (items=4)",
        "level=info ts=2024-05-01T12:34:56Z caller=main.go:42 msg=\"listening\" addr=0.0.0.0:8080",
        "{\"time\":\"2024-05-01T12:34:56.789+02:00\",\"level\":\"warn\",\"latency_ms\":1234567}",
    ] {
        assert_eq!(
            detectors::prescan(line.as_bytes()),
            detectors::Triggers::default(),
            "{line}"
        );
    }
}

/// The prescan never skips a text its detector would redact: over generated lines mixing
/// digit groups, separators, country codes, `@`, `+`, scheme words and `eyJ`, whenever a
/// detector finds something, the prescan has set that detector's trigger.
#[test]
fn prescan_never_skips_what_a_detector_finds() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const PIECES: &[&str] = &[
        " ",
        " ",
        " ",
        "-",
        ".",
        "/",
        "(",
        ")",
        ") ",
        ":",
        "tel:",
        "+",
        "=",
        ",",
        ";",
        "@",
        "x",
        "_",
        "IBAN ",
        "DE",
        "GB",
        "fr",
        "WEST",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9",
        "Bearer ",
        "authorization: ",
        "Authorization=\"Basic ",
        "abcdefgh",
        "Zq9_x-y.z",
        "example.com",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "4111111111111111",
        "0171 1234567",
        "+49 30 1234567",
        "(415) 555-2671",
        "jane@example.org",
    ];
    type Detect = fn(&[u8], &mut Vec<(Range<usize>, Found)>);
    let detectors: [(Found, Detect); 6] = [
        (Found::Card, detectors::cards),
        (Found::Iban, detectors::ibans),
        (Found::Email, detectors::emails),
        (Found::Phone, detectors::phones),
        (Found::Token, detectors::tokens),
        (Found::Jwt, detectors::jwts),
    ];
    let mut rng = StdRng::seed_from_u64(14);
    let mut text = String::new();
    for _ in 0..100_000 {
        text.clear();
        for _ in 0..rng.random_range(1..12) {
            if rng.random_bool(0.5) {
                // A run of digits, often starting with a trunk `0` or an issuer digit.
                let len = rng.random_range(1..=14);
                for k in 0..len {
                    let digit = if k == 0 && rng.random_bool(0.3) {
                        b'0'
                    } else {
                        b'0' + rng.random_range(0..10u8)
                    };
                    text.push(char::from(digit));
                }
            } else {
                text.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        let bytes = text.as_bytes();
        let t = detectors::prescan(bytes);
        for (found, detect) in detectors {
            let mut out = Vec::new();
            detect(bytes, &mut out);
            let triggered = match found {
                Found::Card => t.card,
                Found::Iban => t.iban,
                Found::Email => t.email,
                Found::Phone => t.phone,
                Found::Token => t.token,
                Found::Jwt => t.jwt,
            };
            assert!(
                out.is_empty() || triggered,
                "{found:?} finds {out:?} in {text:?} but the prescan skips it"
            );
        }
    }
}
