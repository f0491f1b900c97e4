//! Users affected by crashes, counted once across pods and fingerprints: the contract between
//! the agent, which exports a small HyperLogLog sketch of the users in its crash events, and
//! the operator's rules and dashboards, which merge the sketches of every pod in PromQL.
//!
//! Each agent (with `logs.userField` set) hashes the user value of every crash event (the
//! first 8 bytes, big-endian, of the SHA-256 of its UTF-8 text: the same user gets the same
//! hash in every pod and agent version) into [`REGISTERS`] = 64 registers: the top
//! [`REGISTER_BITS`] bits pick the register, which keeps the largest rank seen (leading zeros of
//! the other 58 bits, plus one). The sketch covers the last [`WINDOW_MINUTES`] minutes (one
//! sketch per minute, merged when read) and is exported as
//! `vigil_crash_users_register{namespace, app, version, register="0".."63"}`: 64 series per
//! pod, whatever the number of fingerprints.
//!
//! Taking the largest value of each register across pods is the union of their users, so
//! `max by (register)` in PromQL merges pods (and fingerprints, and versions unless grouped by
//! `version`) without counting a user twice; [`users_affected_promql`] turns the merged
//! registers into the HyperLogLog estimate, and [`users_affected_estimate`] is the same formula
//! in Rust. The standard error is 1.04 / √64 ≈ 13 % ([`STANDARD_ERROR`]); below 2.5 × 64 = 160
//! users the small-range correction (linear counting) makes it much closer.

/// The register series the agent exports.
pub const REGISTER_METRIC: &str = "vigil_crash_users_register";
/// Register index bits.
pub const REGISTER_BITS: u32 = 6;
/// Number of registers, 2^[`REGISTER_BITS`].
pub const REGISTERS: usize = 1 << REGISTER_BITS;
/// Minutes of crash events each agent's sketch covers.
pub const WINDOW_MINUTES: u32 = 60;
/// The range over which [`users_affected_promql`] takes each pod's registers: bridges scrape
/// gaps and keeps a pod that stopped for a while, so the estimate covers the last 60 to 65
/// minutes.
pub const QUERY_RANGE: &str = "5m";
/// Relative standard error of the estimate, 1.04 / √[`REGISTERS`].
pub const STANDARD_ERROR: f64 = 0.13;

/// α·m² of the HyperLogLog estimate for m = 64 (α₆₄ = 0.709, Flajolet et al. 2007).
const ALPHA_M_SQUARED: f64 = 0.709 * (REGISTERS * REGISTERS) as f64;
/// Below this raw estimate (2.5·m) linear counting over the empty registers is used.
const SMALL_RANGE: f64 = 2.5 * REGISTERS as f64;

/// PromQL for the distinct users affected by crashes, per `group_by` (such as
/// `["namespace", "app"]`, or with `"version"`), over the series that `selector` picks (the
/// inside of `{…}`, such as `namespace="shop", app="checkout"`): the registers of every pod
/// merged with `max`, then `α·m² / Σ 2^-register`, or `m·ln(m / empty registers)` while that is
/// at most 2.5·m and some register is empty. Covers the last 60 to 65 minutes; standard error
/// 13 %. `group_by` must not be empty.
pub fn users_affected_promql(selector: &str, group_by: &[&str]) -> String {
    let by = group_by.join(", ");
    let registers = format!(
        "max by ({by}, register) (max_over_time({REGISTER_METRIC}{{{selector}}}[{QUERY_RANGE}]))"
    );
    let raw = format!("({ALPHA_M_SQUARED} / sum by ({by}) (0.5 ^ {registers}))");
    let empty = format!("count by ({by}) ({registers} == 0)");
    format!(
        "({m} * ln({m} / {empty}) and on ({by}) ({raw} <= {SMALL_RANGE})) or {raw}",
        m = REGISTERS
    )
}

/// [`users_affected_promql`]'s estimate from the [`REGISTERS`] merged registers, in Rust (for
/// tests, and for whoever reads the registers elsewhere).
pub fn users_affected_estimate(registers: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let sum: f64 = registers.iter().map(|r| 0.5f64.powi(i32::from(*r))).sum();
    let raw = ALPHA_M_SQUARED / sum;
    let empty = registers.iter().filter(|r| **r == 0).count();
    if raw <= SMALL_RANGE && empty > 0 {
        m * (m / empty as f64).ln()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expression names the series, merges by register and applies both branches of the
    /// estimate; the Rust estimate of empty registers is 0 and grows with them filled.
    #[test]
    fn promql_and_estimate_shapes() {
        let promql =
            users_affected_promql(r#"namespace="shop", app="checkout""#, &["namespace", "app"]);
        assert!(promql.contains(
            r#"max by (namespace, app, register) (max_over_time(vigil_crash_users_register{namespace="shop", app="checkout"}[5m]))"#
        ));
        assert!(promql.contains("2904.064 / sum by (namespace, app) (0.5 ^ "));
        assert!(promql.contains("64 * ln(64 / count by (namespace, app) ("));
        assert_eq!(users_affected_estimate(&[0; REGISTERS]), 0.0);
        assert!(users_affected_estimate(&[1; REGISTERS]) > 64.0);
        assert!((STANDARD_ERROR - 1.04 / (REGISTERS as f64).sqrt()).abs() < 1e-9);
    }
}
