//! Which frames of a crash are the application's own, the way crash reporters decide it: the
//! fingerprint is built from those frames, so that the frames of a test framework, of the
//! language runtime or of a web framework never decide a group by themselves.
//!
//! Each frame is first sorted by where its code lives, whatever the configuration
//! ([`FrameKind`]): the language runtime and reflection (`java.`, `jdk.`, `sun.reflect`,
//! Python's standard library, Go's standard packages, Node's `node:` and `internal/` modules,
//! `dart:`, Rust's `std`…), test frameworks and runners (JUnit, TestNG, pytest, Go's
//! `testing`, jest…), and third-party packages (common ones by name, such as
//! `org.springframework` or `github.com/gin-gonic/gin`, and anything under `site-packages/`,
//! `node_modules/`, `vendor/`, `gems/`, Go's module cache or Cargo's registry). Then
//! [`AppPackages`] decides what is in-app: with packages configured (`crashes.appPackages`),
//! exactly the frames in those packages; without, every frame the sorting did not place.

/// Where a frame's code lives, as far as the frame itself tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// The language runtime and its reflection and proxy machinery.
    Runtime,
    /// A test framework, test runner or build tool running tests.
    Test,
    /// A third-party package.
    Library,
    /// None of the above: the application's own code unless its packages are configured.
    Unlisted,
}

/// JVM class-name prefixes of the runtime, reflection included (Kotlin and Scala standard
/// libraries count as runtime).
const JVM_RUNTIME: &[&str] = &[
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "scala.",
    "groovy.lang.",
    "org.codehaus.groovy.runtime.",
    "$Proxy",
];

const JVM_TEST: &[&str] = &[
    "junit.",
    "org.junit.",
    "org.testng.",
    "org.opentest4j.",
    "org.hamcrest.",
    "org.mockito.",
    "org.assertj.",
    "org.easymock.",
    "org.spockframework.",
    "io.kotest.",
    "org.scalatest.",
    "org.specs2.",
    "org.apache.maven.surefire.",
    "org.apache.tools.ant.",
    "org.gradle.",
    "worker.org.gradle.",
    "com.intellij.rt.",
    "org.eclipse.jdt.internal.junit",
];

const JVM_LIBRARY: &[&str] = &[
    "org.springframework.",
    "org.apache.",
    "com.fasterxml.",
    "io.netty.",
    "com.google.",
    "org.hibernate.",
    "org.eclipse.",
    "org.glassfish.",
    "org.jboss.",
    "io.undertow.",
    "io.micronaut.",
    "io.quarkus.",
    "io.vertx.",
    "io.ktor.",
    "kotlinx.",
    "reactor.",
    "io.reactivex.",
    "rx.",
    "akka.",
    "okhttp3.",
    "okio.",
    "retrofit2.",
    "com.squareup.",
    "feign.",
    "io.grpc.",
    "com.amazonaws.",
    "software.amazon.",
    "com.azure.",
    "io.opentelemetry.",
    "io.micrometer.",
    "brave.",
    "zipkin2.",
    "ch.qos.logback.",
    "org.slf4j.",
    "org.aspectj.",
    "net.bytebuddy.",
    "org.objenesis.",
    "cglib.",
    "com.zaxxer.",
    "org.postgresql.",
    "com.mysql.",
    "org.mariadb.",
    "oracle.jdbc.",
    "org.h2.",
    "org.flywaydb.",
    "liquibase.",
    "org.jooq.",
    "org.mybatis.",
    "org.elasticsearch.",
    "co.elastic.",
    "redis.clients.",
    "io.lettuce.",
    "org.mongodb.",
    "com.mongodb.",
    "org.bouncycastle.",
    "org.yaml.",
    "org.thymeleaf.",
    "freemarker.",
    "graphql.",
    "org.joda.",
    "com.github.benmanes.",
    "io.jsonwebtoken.",
    "org.keycloak.",
    "com.netflix.",
    "io.github.resilience4j.",
    "io.dropwizard.",
    "org.jdbi.",
    "org.quartz.",
    "javassist.",
    "org.xml.",
    "org.w3c.",
];

/// C# namespace prefixes.
const CSHARP_RUNTIME: &[&str] = &["System.", "Mono.", "Interop.", "Internal.", "<>"];
const CSHARP_TEST: &[&str] = &[
    "NUnit.",
    "Xunit.",
    "Microsoft.VisualStudio.TestPlatform.",
    "Microsoft.VisualStudio.TestTools.",
    "Moq.",
    "NSubstitute.",
    "FluentAssertions.",
];
const CSHARP_LIBRARY: &[&str] = &[
    "Microsoft.",
    "Newtonsoft.",
    "Npgsql.",
    "Dapper.",
    "Polly.",
    "Serilog.",
    "NLog.",
    "log4net.",
    "AutoMapper.",
    "MediatR.",
    "StackExchange.",
    "Grpc.",
    "Castle.",
    "Autofac.",
    "Hangfire.",
    "MassTransit.",
    "RabbitMQ.",
    "Confluent.",
    "Amazon.",
    "Azure.",
    "Google.",
    "Swashbuckle.",
    "FluentValidation.",
    "Quartz.",
    "Elasticsearch.",
    "Nest.",
    "MongoDB.",
    "Pomelo.",
];

/// Go module path prefixes of common third-party packages (module-cache and vendor paths are
/// recognised from the frame's file line too).
const GO_LIBRARY: &[&str] = &[
    "golang.org/x/",
    "google.golang.org/",
    "github.com/gin-gonic/",
    "github.com/labstack/",
    "github.com/gorilla/",
    "github.com/go-chi/",
    "github.com/gofiber/",
    "github.com/valyala/",
    "github.com/sirupsen/",
    "go.uber.org/",
    "github.com/spf13/",
    "github.com/prometheus/",
    "github.com/jackc/",
    "github.com/lib/pq",
    "github.com/go-sql-driver/",
    "gorm.io/",
    "github.com/redis/",
    "github.com/go-redis/",
    "go.mongodb.org/",
    "github.com/aws/",
    "cloud.google.com/",
    "k8s.io/",
    "sigs.k8s.io/",
    "go.opentelemetry.io/",
    "github.com/grpc-",
    "github.com/golang/",
    "github.com/pkg/errors",
    "github.com/hashicorp/",
    "go.etcd.io/",
    "github.com/nats-io/",
    "github.com/segmentio/",
    "github.com/Shopify/",
    "github.com/IBM/",
    "github.com/jmoiron/",
    "github.com/julienschmidt/",
    "github.com/urfave/",
];
const GO_TEST: &[&str] = &[
    "testing.",
    "github.com/stretchr/testify/",
    "github.com/onsi/",
];

/// Rust crate-path prefixes (`std`, `core`, `alloc` are dropped before this, as panic
/// machinery).
const RUST_RUNTIME: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    "rust_begin_unwind",
    "__rust",
];
const RUST_TEST: &[&str] = &["test::", "<test::"];
const RUST_LIBRARY: &[&str] = &[
    "tokio::",
    "hyper::",
    "hyper_util::",
    "axum::",
    "tower::",
    "tower_http::",
    "futures::",
    "futures_util::",
    "futures_core::",
    "serde::",
    "serde_json::",
    "actix_web::",
    "actix_rt::",
    "actix_http::",
    "reqwest::",
    "tracing::",
    "anyhow::",
    "h2::",
    "rayon::",
    "rayon_core::",
    "tonic::",
    "warp::",
    "rocket::",
    "sqlx::",
    "diesel::",
    "tokio_util::",
    "mio::",
];

/// Dart package names of frameworks and common packages (`dart:` is the runtime).
const DART_LIBRARY: &[&str] = &[
    "package:flutter/",
    "package:http/",
    "package:dio/",
    "package:provider/",
    "package:riverpod/",
    "package:flutter_riverpod/",
    "package:bloc/",
    "package:flutter_bloc/",
    "package:get/",
    "package:shelf/",
    "package:async/",
    "package:collection/",
    "package:stack_trace/",
    "package:sqflite/",
    "package:firebase_core/",
];
const DART_TEST: &[&str] = &[
    "package:test/",
    "package:test_api/",
    "package:flutter_test/",
];

fn starts_with_any(text: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| text.starts_with(p))
}

fn contains_any(text: &str, parts: &[&str]) -> bool {
    parts.iter().any(|p| text.contains(p))
}

/// Sorts a JVM frame by its class name (`com.acme.Cart.pay`).
pub(crate) fn jvm_kind(name: &str) -> FrameKind {
    if starts_with_any(name, JVM_RUNTIME) || name.contains("$$Lambda") {
        FrameKind::Runtime
    } else if starts_with_any(name, JVM_TEST) {
        FrameKind::Test
    } else if starts_with_any(name, JVM_LIBRARY) {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a C# frame by its namespace.
pub(crate) fn csharp_kind(name: &str) -> FrameKind {
    if starts_with_any(name, CSHARP_RUNTIME) {
        FrameKind::Runtime
    } else if starts_with_any(name, CSHARP_TEST) {
        FrameKind::Test
    } else if starts_with_any(name, CSHARP_LIBRARY) {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a JavaScript frame by its file: Node's own modules (`node:internal/…`, old
/// `internal/…`, bare core file names such as `net.js`, `native`), `node_modules/`.
pub(crate) fn js_kind(place: &str) -> FrameKind {
    let place = place.trim();
    const TEST: &[&str] = &[
        "node_modules/jest",
        "node_modules/@jest/",
        "node_modules/mocha/",
        "node_modules/jasmine",
        "node_modules/vitest/",
        "node_modules/@vitest/",
        "node_modules/ava/",
        "node_modules/tap/",
    ];
    if place.starts_with("node:")
        || place.starts_with("internal/")
        || place == "native"
        || place == "<anonymous>"
        || (!place.contains('/') && !place.contains('\\'))
    {
        FrameKind::Runtime
    } else if contains_any(place, TEST) {
        FrameKind::Test
    } else if place.contains("node_modules/") || place.contains("/webpack/") {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a Python frame by its file: the standard library (`…/lib/python3.12/…` outside
/// `site-packages`, `<frozen …>`), test runners, installed packages.
pub(crate) fn python_kind(path: &str) -> FrameKind {
    let installed = path.contains("/site-packages/") || path.contains("/dist-packages/");
    const TEST: &[&str] = &[
        "/_pytest/",
        "/pytest/",
        "/pluggy/",
        "/unittest/",
        "/nose/",
        "/nose2/",
        "/hypothesis/",
    ];
    if contains_any(path, TEST) {
        FrameKind::Test
    } else if path.starts_with("<frozen ") || (!installed && is_python_stdlib(path)) {
        FrameKind::Runtime
    } else if installed {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// `/usr/lib/python3.11/json/decoder.py`, `C:\Python312\Lib\asyncio\…`.
fn is_python_stdlib(path: &str) -> bool {
    let path = path.replace('\\', "/");
    let lower = path.to_ascii_lowercase();
    ["/lib/python", "/python3", "/python2"]
        .iter()
        .any(|marker| {
            lower.find(marker).is_some_and(|i| {
                let rest = &lower[i + marker.len()..];
                rest.starts_with(|c: char| c.is_ascii_digit())
                    || (marker.starts_with("/python") && rest.starts_with("/lib/"))
            })
        })
}

/// Top-level packages of Go's standard library (`testing` is a test framework).
const GO_STD: &[&str] = &[
    "runtime",
    "internal",
    "net",
    "sync",
    "reflect",
    "fmt",
    "encoding",
    "io",
    "os",
    "syscall",
    "errors",
    "strings",
    "strconv",
    "bytes",
    "context",
    "crypto",
    "database",
    "math",
    "sort",
    "time",
    "bufio",
    "compress",
    "container",
    "hash",
    "html",
    "image",
    "log",
    "mime",
    "path",
    "regexp",
    "text",
    "unicode",
    "archive",
    "debug",
    "embed",
    "expvar",
    "flag",
    "go",
    "plugin",
    "slices",
    "maps",
    "cmp",
    "iter",
    "unique",
    "weak",
    "vendor",
];

/// Sorts a Go frame by its package path (`net/http.(*conn).serve`,
/// `github.com/acme/shop/cart.(*Cart).Pay`) and file: the standard library, `testing`, common
/// modules, the module cache (`/pkg/mod/`) and vendored packages.
pub(crate) fn go_kind(function: &str, file: &str) -> FrameKind {
    let last_slash = function.rfind('/').map_or(0, |i| i + 1);
    let package = match function[last_slash..].find('.') {
        Some(dot) => &function[..last_slash + dot],
        None => function,
    };
    let first = package.split('/').next().unwrap_or_default();
    if package == "main" {
        FrameKind::Unlisted
    } else if package == "testing" || starts_with_any(function, GO_TEST) {
        FrameKind::Test
    } else if function == "panic" || (!first.contains('.') && GO_STD.contains(&first)) {
        FrameKind::Runtime
    } else if starts_with_any(function, GO_LIBRARY)
        || file.contains("/pkg/mod/")
        || file.contains("/vendor/")
    {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a Ruby frame by its file: gems (RSpec and Minitest as tests), Ruby's own library.
pub(crate) fn ruby_kind(path: &str) -> FrameKind {
    if contains_any(
        path,
        &[
            "/gems/rspec",
            "/gems/minitest",
            "/gems/test-unit",
            "/gems/cucumber",
        ],
    ) {
        FrameKind::Test
    } else if path.contains("/gems/") || path.contains("/vendor/bundle/") {
        FrameKind::Library
    } else if path.starts_with("<internal:") || path.contains("/lib/ruby/") {
        FrameKind::Runtime
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a PHP frame by its file: `[internal function]`, Composer's `vendor/` (PHPUnit as
/// tests).
pub(crate) fn php_kind(path: &str) -> FrameKind {
    if path == "[internal function]" || path.is_empty() {
        FrameKind::Runtime
    } else if path.contains("vendor/phpunit/") || path.contains("vendor/pestphp/") {
        FrameKind::Test
    } else if path.contains("vendor/") {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a Dart frame by its URI.
pub(crate) fn dart_kind(place: &str) -> FrameKind {
    if place.starts_with("dart:") {
        FrameKind::Runtime
    } else if starts_with_any(place, DART_TEST) {
        FrameKind::Test
    } else if starts_with_any(place, DART_LIBRARY) || place.contains("/.pub-cache/") {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Sorts a Rust frame by its symbol path, or a panic location by its file.
pub(crate) fn rust_kind(symbol_or_path: &str) -> FrameKind {
    let s = symbol_or_path;
    if starts_with_any(s, RUST_RUNTIME) || s.starts_with("/rustc/") {
        FrameKind::Runtime
    } else if starts_with_any(s, RUST_TEST) {
        FrameKind::Test
    } else if starts_with_any(s, RUST_LIBRARY)
        || RUST_LIBRARY
            .iter()
            .any(|p| s.starts_with('<') && s[1..].starts_with(p))
        || s.contains("/.cargo/registry/")
        || s.contains("/.cargo/git/")
    {
        FrameKind::Library
    } else {
        FrameKind::Unlisted
    }
}

/// Longest application package name kept; longer entries are cut (the CRD bounds them too).
const MAX_PACKAGE_LEN: usize = 256;
/// Most application packages kept.
const MAX_PACKAGES: usize = 64;

/// The application's own packages (`crashes.appPackages`): JVM or C# package prefixes
/// (`com.bank.mobile`), Go module paths (`github.com/bank/mobile`), Python, Ruby, PHP or
/// JavaScript top-level packages or directories (`mobile`, `src/mobile`), Dart package names,
/// Rust crate names. Empty: detection by [`FrameKind`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppPackages {
    packages: Vec<String>,
}

impl AppPackages {
    /// Keeps the non-empty entries, trimmed of trailing separators (`com.bank.`, `src/`).
    pub fn new(packages: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let packages = packages
            .into_iter()
            .map(|p| {
                p.as_ref()
                    .trim()
                    .trim_end_matches(['.', '/', ':', '\\'])
                    .chars()
                    .take(MAX_PACKAGE_LEN)
                    .collect::<String>()
            })
            .filter(|p| !p.is_empty())
            .take(MAX_PACKAGES)
            .collect();
        AppPackages { packages }
    }

    /// True when packages are configured.
    pub fn is_configured(&self) -> bool {
        !self.packages.is_empty()
    }

    /// Whether a frame of `kind` whose code lives in `module` is the application's own.
    pub(crate) fn is_in_app(&self, kind: FrameKind, module: &str) -> bool {
        if self.packages.is_empty() {
            return kind == FrameKind::Unlisted;
        }
        self.packages.iter().any(|p| package_matches(p, module))
    }
}

/// Folders that installed packages live under: inside one, only the package right below it
/// can be the application's (`site-packages/shop/…` for `shop`, not `vendor/x/src/…` for
/// `src`).
const INSTALL_DIRS: [&str; 6] = [
    "site-packages/",
    "dist-packages/",
    "node_modules/",
    "vendor/",
    "gems/",
    "/pkg/mod/",
];

/// Whether `module` (a dotted or `::` name, a package path or a file path) lies in `package`:
/// the package starts the module, or (for paths) is a run of whole directories in it.
fn package_matches(package: &str, module: &str) -> bool {
    let boundary = |c: Option<char>| matches!(c, None | Some('.' | '/' | ':' | '$' | '\\' | '('));
    let path_like = module.contains('/') || module.contains('\\');
    let installed_at = INSTALL_DIRS
        .iter()
        .filter_map(|dir| module.rfind(dir).map(|i| i + dir.len()))
        .max();
    let slashed = package.replace('.', "/");
    let coloned = package.replace('.', "::");
    for candidate in [package, slashed.as_str(), coloned.as_str()] {
        if let Some(start) = installed_at {
            if module[start..].starts_with(candidate)
                && boundary(module[start + candidate.len()..].chars().next())
            {
                return true;
            }
            continue;
        }
        let mut from = 0;
        while let Some(i) = module[from..].find(candidate) {
            let at = from + i;
            let before = module[..at].chars().next_back();
            let after = module[at + candidate.len()..].chars().next();
            let starts_segment = at == 0 || matches!(before, Some('/' | '\\' | ':' | ' '));
            // Dotted names only match from their start: `shop` is not `com.other.shop`.
            if starts_segment && (at == 0 || path_like) && boundary(after) {
                return true;
            }
            from = at + candidate.len().max(1);
        }
    }
    false
}
