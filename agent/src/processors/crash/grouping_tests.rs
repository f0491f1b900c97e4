//! Grouping: the in-app rule in every language, and the fingerprints of the Defects4J traces
//! (see `tests/fixtures/stacktraces-defects4j/SOURCE.txt`) scored by pairwise precision and
//! recall against their bug ids.

use std::collections::HashMap;

use regex::Regex;

use super::*;
use crate::event::{LogEvent, Stream};
use crate::processors::multiline::jvm_tests::defects4j_traces;

/// Pairwise precision and recall of a grouping: of the pairs of traces that share a
/// fingerprint, the share that are the same bug; of the pairs that are the same bug, the share
/// that share a fingerprint.
fn pairwise_precision_recall(grouped: &[(&str, String)]) -> (f64, f64) {
    let (mut same_both, mut same_fingerprint, mut same_bug) = (0u64, 0u64, 0u64);
    for (i, (bug_a, fp_a)) in grouped.iter().enumerate() {
        for (bug_b, fp_b) in &grouped[i + 1..] {
            let bug = bug_a == bug_b;
            let fp = fp_a == fp_b;
            same_both += u64::from(bug && fp);
            same_fingerprint += u64::from(fp);
            same_bug += u64::from(bug);
        }
    }
    (
        same_both as f64 / same_fingerprint.max(1) as f64,
        same_both as f64 / same_bug.max(1) as f64,
    )
}

/// Fingerprints of the Defects4J traces by bug, from one detector.
fn defects4j_fingerprints(detector_for: impl Fn(&str) -> CrashDetector) -> Vec<(String, String)> {
    let mut detectors: HashMap<String, CrashDetector> = HashMap::new();
    defects4j_traces()
        .into_iter()
        .map(|trace| {
            let detector = detectors
                .entry(trace.project.clone())
                .or_insert_with(|| detector_for(&trace.project));
            let mut event = LogEvent::line("app", Stream::Stderr, 1, &trace.text());
            event.lines = trace.lines.len() as u32;
            let crash = detector
                .observe(&mut event)
                .expect("every trace is a crash");
            (trace.bug, crash.fingerprint)
        })
        .collect()
}

/// The packages of each Defects4J project, as its `MonitoredApp` would list them in
/// `crashes.appPackages`.
fn defects4j_app_packages(project: &str) -> AppPackages {
    let packages: &[&str] = match project {
        "Chart" => &["org.jfree"],
        "Cli" => &["org.apache.commons.cli", "org.apache.commons.cli2"],
        "Codec" => &["org.apache.commons.codec"],
        "Collections" => &[
            "org.apache.commons.collections4",
            "org.apache.commons.collections",
        ],
        "Compress" => &["org.apache.commons.compress"],
        "Csv" => &["org.apache.commons.csv"],
        "Gson" => &["com.google.gson"],
        "JacksonCore" => &["com.fasterxml.jackson.core"],
        "Lang" => &["org.apache.commons.lang3", "org.apache.commons.lang"],
        "Math" => &["org.apache.commons.math3", "org.apache.commons.math"],
        "Time" => &["org.joda.time"],
        other => panic!("unknown project {other}"),
    };
    AppPackages::new(packages)
}

/// Pairwise precision and recall and the number of fingerprints.
fn score(fingerprints: &[(String, String)]) -> (f64, f64, usize) {
    let grouped: Vec<(&str, String)> = fingerprints
        .iter()
        .map(|(bug, fp)| (bug.as_str(), fp.clone()))
        .collect();
    let (precision, recall) = pairwise_precision_recall(&grouped);
    let groups = grouped
        .iter()
        .map(|(_, fp)| fp)
        .collect::<std::collections::HashSet<_>>()
        .len();
    (precision, recall, groups)
}

/// Grouping by the top in-app frame tells the Defects4J bugs apart far better than the top
/// five frames did (pairwise precision 0.19 and recall 0.40 on the same joined traces, 0.08 /
/// 0.12 end to end with the old joiner), with `appPackages` unset and set. These are test
/// failures, where different bugs often fail in one shared test helper: the figures compare
/// versions of the grouping, they are not absolutes. Prints them
/// (`cargo test -p vigil-agent --lib grouping -- --nocapture`).
#[test]
fn defects4j_grouping_precision_and_recall() {
    let id = Identity::default();
    let unset = score(&defects4j_fingerprints(|_| CrashDetector::new(&id, None)));
    let set = score(&defects4j_fingerprints(|project| {
        CrashDetector::new(&id, None).with_app_packages(defects4j_app_packages(project))
    }));
    for (label, (precision, recall, groups)) in [("unset", unset), ("per project", set)] {
        println!(
            "Defects4J, 801 traces of 417 bugs, appPackages {label}: {groups} fingerprints, \
             pairwise precision {precision:.2}, recall {recall:.2}"
        );
        assert!(precision >= 0.8 && recall >= 0.45, "appPackages {label}");
    }
}

// ---------------------------------------------------------------------------------------------
// The in-app rule, language by language.

/// A trace whose top frames are runtime, test-framework or library code, and what grouping
/// must make of it.
struct InAppCase {
    language: &'static str,
    trace: &'static str,
    /// The frame the fingerprint is built from with `appPackages` unset.
    in_app: &'static str,
    /// A configured package holding that frame.
    package: &'static str,
    /// A library frame's text, and another library's: swapping them keeps the fingerprint.
    library: (&'static str, &'static str),
    /// The in-app function's name, and another: swapping them changes the fingerprint.
    function: (&'static str, &'static str),
}

const IN_APP_CASES: &[InAppCase] = &[
    InAppCase {
        language: "java",
        trace: "java.lang.NullPointerException: Cannot invoke \"String.trim()\" because \"raw\" is null
	at java.base/java.util.Objects.requireNonNull(Objects.java:209)
	at jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
	at com.fasterxml.jackson.databind.ObjectMapper.readValue(ObjectMapper.java:3548)
	at com.bank.mobile.accounts.AccountParser.parse(AccountParser.java:41)
	at com.bank.mobile.accounts.AccountController.get(AccountController.java:20)
	at org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)
	at org.junit.jupiter.engine.execution.MethodInvocation.proceed(MethodInvocation.java:60)",
        in_app: "com.bank.mobile.accounts.AccountParser.parse",
        package: "com.bank.mobile",
        library: ("com.fasterxml.jackson.databind.ObjectMapper.readValue", "com.google.gson.Gson.fromJson"),
        function: ("AccountParser.parse", "AccountParser.parseLegacy"),
    },
    InAppCase {
        language: "java",
        trace: "java.util.NoSuchElementException: List is empty.
	at kotlin.collections.CollectionsKt___CollectionsKt.first(_Collections.kt:214)
	at com.bank.mobile.cart.CartKt.total(Cart.kt:12)
	at kotlinx.coroutines.DispatchedTask.run(DispatchedTask.kt:108)
	at scala.concurrent.impl.Promise$Transformation.run(Promise.scala:467)",
        in_app: "com.bank.mobile.cart.CartKt.total",
        package: "com.bank.mobile.cart",
        library: ("kotlinx.coroutines.DispatchedTask.run", "io.ktor.server.engine.BaseApplicationEngine.run"),
        function: ("CartKt.total", "CartKt.subtotal"),
    },
    InAppCase {
        language: "python",
        trace: r#"Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/flask/app.py", line 1473, in wsgi_app
    response = self.full_dispatch_request()
  File "/app/shop/views.py", line 12, in checkout
    total = cart.total()
  File "/app/shop/cart.py", line 30, in total
    return json.loads(raw)
  File "/usr/local/lib/python3.12/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
  File "/usr/local/lib/python3.12/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"#,
        in_app: "/app/shop/cart.py in total",
        package: "shop",
        library: ("site-packages/flask/app.py", "site-packages/django/core/handlers/base.py"),
        function: ("line 30, in total", "line 30, in grand_total"),
    },
    InAppCase {
        language: "go",
        trace: "panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6c2d1a]

goroutine 42 [running]:
panic({0x7d1f20?, 0xc0000b6000?})
	/usr/local/go/src/runtime/panic.go:770 +0x132
github.com/gin-gonic/gin.(*Context).Next(...)
	/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go:174
github.com/bank/mobile/internal/accounts.(*Handler).Get(0xc0001a2000, 0xc0003b4100)
	/src/internal/accounts/handler.go:57 +0x1a
net/http.(*conn).serve(0xc000124000, {0x8f1e10, 0xc0000a6000})
	/usr/local/go/src/net/http/server.go:2009 +0x5f4
created by net/http.(*Server).Serve in goroutine 1
	/usr/local/go/src/net/http/server.go:3086 +0x5cb",
        in_app: "github.com/bank/mobile/internal/accounts.(*Handler).Get",
        package: "github.com/bank/mobile",
        library: ("github.com/gin-gonic/gin.(*Context).Next", "github.com/labstack/echo/v4.(*Echo).ServeHTTP"),
        function: ("(*Handler).Get", "(*Handler).List"),
    },
    InAppCase {
        language: "js",
        trace: "TypeError: Cannot read properties of undefined (reading 'id')
    at Object.get (/app/node_modules/lodash/get.js:12:20)
    at AccountService.load (/app/src/accounts/service.js:41:18)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
        in_app: "AccountService.load (/app/src/accounts/service.js)",
        package: "src/accounts",
        library: ("Object.get (/app/node_modules/lodash/get.js", "Object.get (/app/node_modules/ramda/src/path.js"),
        function: ("AccountService.load", "AccountService.reload"),
    },
    InAppCase {
        language: "ruby",
        trace: "NoMethodError (undefined method `name' for nil:NilClass):
  /usr/local/bundle/gems/activesupport-7.0.4/lib/active_support/core_ext/object/try.rb:15:in `try'
  app/models/account.rb:14:in `display_name'
  app/controllers/accounts_controller.rb:8:in `show'
  /usr/local/bundle/gems/actionpack-7.0.4/lib/action_controller/metal/basic_implicit_render.rb:6:in `send_action'",
        in_app: "app/models/account.rb in display_name",
        package: "app/models",
        library: ("activesupport-7.0.4/lib/active_support/core_ext/object/try.rb", "dry-monads-1.6.0/lib/dry/monads/maybe.rb"),
        function: ("in `display_name'", "in `full_name'"),
    },
    InAppCase {
        language: "php",
        trace: "PHP Fatal error:  Uncaught TypeError: Account::name(): Return value must be of type string, null returned in /var/www/src/Account.php:20
Stack trace:
#0 /var/www/vendor/laravel/framework/src/Illuminate/Support/Collection.php(638): App\\Account->name()
#1 /var/www/src/AccountController.php(31): Illuminate\\Support\\Collection->map(Object(Closure))
#2 [internal function]: App\\AccountController->show()
#3 {main}
  thrown in /var/www/src/Account.php on line 20",
        in_app: "/var/www/src/AccountController.php: Illuminate\\Support\\Collection->map",
        package: "src",
        library: ("laravel/framework/src/Illuminate/Support/Collection.php", "symfony/http-kernel/HttpKernel.php"),
        function: ("AccountController.php(31)", "AccountsController.php(31)"),
    },
    InAppCase {
        language: "csharp",
        trace: "System.InvalidOperationException: Sequence contains no elements
   at System.Linq.ThrowHelper.ThrowNoElementsException()
   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)
   at Newtonsoft.Json.JsonConvert.DeserializeObject(String value)
   at Bank.Mobile.Accounts.AccountService.GetBalance(Int32 id) in /src/Accounts/AccountService.cs:line 42
   at Bank.Mobile.Accounts.AccountsController.Get(Int32 id) in /src/Accounts/AccountsController.cs:line 18
   at Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor.Execute(ObjectMethodExecutor executor)
   at Xunit.Sdk.TestInvoker`1.CallTestMethod(Object testClassInstance)",
        in_app: "Bank.Mobile.Accounts.AccountService.GetBalance(Int32 id)",
        package: "Bank.Mobile",
        library: ("Newtonsoft.Json.JsonConvert.DeserializeObject", "Dapper.SqlMapper.QueryFirst"),
        function: ("AccountService.GetBalance", "AccountService.GetLimit"),
    },
    InAppCase {
        language: "dart",
        trace: "Unhandled exception:
Bad state: No element
#0      ListMixin.first (dart:collection/list.dart:167:5)
#1      Dio.fetch (package:dio/src/dio_mixin.dart:400:7)
#2      AccountRepository.primary (package:bank_mobile/accounts/repository.dart:22:18)
#3      main (file:///app/bin/main.dart:9:3)",
        in_app: "AccountRepository.primary (package:bank_mobile/accounts/repository.dart)",
        package: "bank_mobile",
        library: ("Dio.fetch (package:dio/src/dio_mixin.dart", "Client.send (package:http/src/client.dart"),
        function: ("AccountRepository.primary", "AccountRepository.secondary"),
    },
    InAppCase {
        language: "rust",
        trace: "thread 'tokio-runtime-worker' panicked at /root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/serde_json-1.0.108/src/value/index.rs:102:18:
called `Option::unwrap()` on a `None` value
stack backtrace:
   0: rust_begin_unwind
   1: core::panicking::panic_fmt
   2: core::option::unwrap_failed
   3: serde_json::value::index::Index::index_into
   4: bank_mobile::accounts::balance
   5: bank_mobile::handlers::get_balance::{{closure}}
   6: tokio::runtime::task::core::Core<T,S>::poll
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        in_app: "bank_mobile::accounts::balance",
        package: "bank_mobile",
        library: ("serde_json::value::index::Index::index_into", "axum::routing::Route::call"),
        function: ("accounts::balance", "accounts::limit"),
    },
];

fn grouping_frame(text: &str, app: &AppPackages) -> String {
    let found = analyse::analyse_trace(text).expect("a trace");
    let frames = found.grouping_frames(app);
    assert_eq!(frames.len(), 1, "{text}");
    frames[0].name.clone()
}

fn fingerprint_with(text: &str, app: &AppPackages) -> String {
    analyse::analyse_trace(text)
        .expect("a trace")
        .fingerprint(app)
}

/// Each language's in-app rule, with `appPackages` unset and set: the fingerprint is built
/// from the top frame of the application's own code, past runtime, reflection, test-framework
/// and library frames; another library in between or other line numbers keep it, another
/// in-app function changes it.
#[test]
fn in_app_frames_decide_the_group_in_every_language() {
    let unset = AppPackages::default();
    // Line (and column) numbers: `:12`, `line 12`, PHP's `(12)`.
    let line_numbers = Regex::new(r"(:|line |\()(\d+)").unwrap();
    for case in IN_APP_CASES {
        let found = analyse::analyse_trace(case.trace).unwrap();
        assert_eq!(found.language, case.language, "{}", case.trace);
        let configured = AppPackages::new([case.package]);
        for app in [&unset, &configured] {
            assert_eq!(grouping_frame(case.trace, app), case.in_app, "{app:?}");
            assert_eq!(
                found.top_frame(app).map(|f| f.name.as_str()),
                Some(case.in_app)
            );
            let fingerprint = fingerprint_with(case.trace, app);
            let (library, other_library) = case.library;
            assert!(case.trace.contains(library), "{library}");
            let swapped = case.trace.replace(library, other_library);
            assert_eq!(fingerprint_with(&swapped, app), fingerprint, "{swapped}");
            let moved = line_numbers.replace_all(case.trace, "${1}9$2").into_owned();
            assert_ne!(moved, case.trace);
            assert_eq!(fingerprint_with(&moved, app), fingerprint, "{moved}");
            let (function, other_function) = case.function;
            assert!(case.trace.contains(function), "{function}");
            let other = case.trace.replace(function, other_function);
            assert_ne!(fingerprint_with(&other, app), fingerprint, "{other}");
        }
    }
}

/// With packages configured, frames outside them are not in-app even when no list knows
/// them, and a package that only looks like a library's (`org.apache.fineract`) is in-app;
/// a trace with no in-app frame falls back on its top frame outside the runtime and test
/// frameworks, so JUnit or JDK frames alone never decide a group.
#[test]
fn configured_packages_and_the_fallback() {
    let trace = "java.lang.IllegalArgumentException: amount must be positive
	at org.apache.commons.lang3.Validate.isTrue(Validate.java:158)
	at org.apache.fineract.portfolio.loan.LoanService.approve(LoanService.java:77)
	at com.acme.shared.Audit.run(Audit.java:9)
	at org.junit.jupiter.api.AssertThrows.assertThrows(AssertThrows.java:53)";
    assert_eq!(
        grouping_frame(trace, &AppPackages::default()),
        "com.acme.shared.Audit.run"
    );
    assert_eq!(
        grouping_frame(trace, &AppPackages::new(["org.apache.fineract"])),
        "org.apache.fineract.portfolio.loan.LoanService.approve"
    );
    // No frame in the configured packages: the top library frame, never JUnit's.
    assert_eq!(
        grouping_frame(trace, &AppPackages::new(["com.bank.mobile"])),
        "org.apache.commons.lang3.Validate.isTrue"
    );
    let test_only = "junit.framework.AssertionFailedError: expected:<1> but was:<2>
	at junit.framework.Assert.fail(Assert.java:57)
	at junit.framework.Assert.assertEquals(Assert.java:78)
	at sun.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
	at org.apache.tools.ant.taskdefs.optional.junit.JUnitTestRunner.run(JUnitTestRunner.java:520)";
    // Only test-framework and runtime frames: the exception type with the top frame.
    assert_eq!(
        grouping_frame(test_only, &AppPackages::default()),
        "junit.framework.Assert.fail"
    );
    let helper_a = test_only.replace(
        "\tat sun.reflect",
        "\tat com.acme.CartTest.totals(CartTest.java:31)\n\tat sun.reflect",
    );
    let helper_b = helper_a.replace("CartTest.totals", "CartTest.discounts");
    assert_ne!(
        fingerprint_with(&helper_a, &AppPackages::default()),
        fingerprint_with(&helper_b, &AppPackages::default())
    );
}

/// Which packages match: whole names from the start for dotted and `::` names, whole
/// directories anywhere in paths, `package:` URIs; trailing separators are ignored.
#[test]
fn app_packages_match_whole_segments() {
    use super::in_app::FrameKind::Library;
    let app = AppPackages::new(["com.bank.mobile.", "shop", "bank_mobile", "src/"]);
    for module in [
        "com.bank.mobile.Cart.total",
        "com.bank.mobile$Inner.run",
        "/app/shop/cart.py",
        "shop/cart.py",
        "site-packages/shop/cart.py",
        "package:bank_mobile/accounts/repository.dart",
        "bank_mobile::accounts::balance",
        "/app/src/accounts/service.js",
    ] {
        assert!(app.is_in_app(Library, module), "{module}");
    }
    for module in [
        "com.bank.mobileapp.Cart.total",
        "org.other.shop.Cart.total",
        "/app/shopping/cart.py",
        "site-packages/flask/shop/app.py",
        "vendor/laravel/framework/src/Support/Collection.php",
        "package:bank_mobile_ui/x.dart",
        "other::bank_mobile::x",
    ] {
        assert!(!app.is_in_app(Library, module), "{module}");
    }
}

/// The packages reach the detector's fingerprints and `frame` label, and a reload replaces
/// them for the crashes seen after it.
#[test]
fn detector_uses_the_configured_packages() {
    let trace = "java.lang.IllegalArgumentException: amount must be positive
	at org.apache.commons.lang3.Validate.isTrue(Validate.java:158)
	at org.apache.fineract.portfolio.loan.LoanService.approve(LoanService.java:77)";
    let observe = |detector: &CrashDetector| {
        let mut event = LogEvent::line("app", Stream::Stderr, 1, trace);
        event.lines = 3;
        detector.observe(&mut event).unwrap()
    };
    let detector = CrashDetector::new(&Identity::default(), None);
    let detected = observe(&detector);
    assert_eq!(detected.frame, "org.apache.commons.lang3.Validate.isTrue");
    detector.set_app_packages(AppPackages::new(["org.apache.fineract"]));
    let configured = observe(&detector);
    assert_eq!(
        configured.frame,
        "org.apache.fineract.portfolio.loan.LoanService.approve"
    );
    assert_ne!(configured.fingerprint, detected.fingerprint);
    assert!(detector
        .exposition()
        .contains("frame=\"org.apache.fineract.portfolio.loan.LoanService.approve\"} 1\n"));
}
