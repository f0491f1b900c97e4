//! Distinct counting with bounded memory, for the crash detector's user counts
//! (`vigil_crash_affected_users`, `vigil_active_users`).
//!
//! A [`DistinctCounter`] keeps the exact set of 64-bit hashes while it is small (up to
//! [`EXACT_LIMIT`] values, 8 bytes each) and turns into a HyperLogLog sketch past that:
//! 2^[`PRECISION`] = 4096 one-byte registers (4 KiB), a standard error of about
//! 1.04 / √4096 ≈ 1.6 %. The estimate uses Otmar Ertl's "improved raw estimator" (New
//! cardinality estimation algorithms for HyperLogLog sketches, 2017), which needs neither the
//! bias tables nor the linear-counting switch of HyperLogLog++ and is accurate over the whole
//! range. Sketches merge register by register, so the per-minute sketches of the active-user
//! window combine without loss.
//!
//! [`CrashUserWindow`] is the small sketch Prometheus merges across pods
//! (`vigil_crash_users_register`, see `vigil_crds::crash_users`): 64 registers per minute over
//! the last hour, fed with a hash that is the same in every pod and agent version.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use vigil_crds::crash_users::{REGISTERS as USER_REGISTERS, REGISTER_BITS, WINDOW_MINUTES};

/// Register index bits.
pub(crate) const PRECISION: u32 = 12;
const REGISTERS: usize = 1 << PRECISION;
/// Largest register value: leading zeros of the remaining 52 bits, plus one.
const MAX_RANK: usize = (64 - PRECISION) as usize + 1;
/// Distinct values counted exactly before switching to the sketch.
pub(crate) const EXACT_LIMIT: usize = 512;

/// The 64-bit hash a value is counted by.
pub(crate) fn hash_value(value: &str) -> u64 {
    // SipHash with fixed keys: stable for the life of the process, which is all a counter
    // held in memory needs.
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Counts distinct values: exactly while few, then with a HyperLogLog sketch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DistinctCounter {
    /// Sorted distinct hashes.
    Exact(Vec<u64>),
    /// HyperLogLog registers.
    Sketch(Box<[u8]>),
}

impl Default for DistinctCounter {
    fn default() -> Self {
        DistinctCounter::Exact(Vec::new())
    }
}

impl DistinctCounter {
    /// Counts the value with hash `hash`.
    pub(crate) fn insert(&mut self, hash: u64) {
        match self {
            DistinctCounter::Exact(hashes) => {
                if let Err(at) = hashes.binary_search(&hash) {
                    hashes.insert(at, hash);
                    if hashes.len() > EXACT_LIMIT {
                        let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
                        for h in hashes.iter() {
                            add_to_registers(&mut registers, *h);
                        }
                        *self = DistinctCounter::Sketch(registers);
                    }
                }
            }
            DistinctCounter::Sketch(registers) => add_to_registers(registers, hash),
        }
    }

    /// Adds everything counted by `other`.
    pub(crate) fn merge(&mut self, other: &DistinctCounter) {
        match other {
            DistinctCounter::Exact(hashes) => {
                for h in hashes {
                    self.insert(*h);
                }
            }
            DistinctCounter::Sketch(theirs) => {
                if let DistinctCounter::Exact(hashes) = self {
                    let mut registers = theirs.clone();
                    for h in hashes.iter() {
                        add_to_registers(&mut registers, *h);
                    }
                    *self = DistinctCounter::Sketch(registers);
                } else if let DistinctCounter::Sketch(ours) = self {
                    for (o, t) in ours.iter_mut().zip(theirs.iter()) {
                        *o = (*o).max(*t);
                    }
                }
            }
        }
    }

    /// The number of distinct values counted (exact below [`EXACT_LIMIT`]).
    pub(crate) fn estimate(&self) -> f64 {
        match self {
            DistinctCounter::Exact(hashes) => hashes.len() as f64,
            DistinctCounter::Sketch(registers) => estimate_registers(registers),
        }
    }
}

fn add_to_registers(registers: &mut [u8], hash: u64) {
    let index = (hash >> (64 - PRECISION)) as usize;
    let rest = hash << PRECISION;
    let rank = (rest.leading_zeros() as usize + 1).min(MAX_RANK) as u8;
    if let Some(register) = registers.get_mut(index) {
        *register = (*register).max(rank);
    }
}

/// Ertl's improved raw estimator.
fn estimate_registers(registers: &[u8]) -> f64 {
    let m = registers.len() as f64;
    let mut counts = [0u32; MAX_RANK + 1];
    for r in registers {
        counts[(*r as usize).min(MAX_RANK)] += 1;
    }
    let mut z = m * tau(1.0 - f64::from(counts[MAX_RANK]) / m);
    for k in (1..MAX_RANK).rev() {
        z = 0.5 * (z + f64::from(counts[k]));
    }
    z += m * sigma(f64::from(counts[0]) / m);
    let alpha_infinity = 0.5 / std::f64::consts::LN_2;
    alpha_infinity * m * m / z
}

fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

/// The hash the cross-pod user registers count by: the first 8 bytes (big-endian) of the
/// SHA-256 of the value, so that every pod and every agent version agree on it.
pub(crate) fn stable_hash(value: &str) -> u64 {
    let digest = Sha256::digest(value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The 64 registers of the cross-pod sketch: the largest rank seen in each.
pub(crate) type UserRegisters = [u8; USER_REGISTERS];

/// Adds `hash` to `registers`: its top bits pick the register, which keeps the largest rank
/// (leading zeros of the remaining bits, plus one).
pub(crate) fn add_to_user_registers(registers: &mut UserRegisters, hash: u64) {
    let index = (hash >> (64 - REGISTER_BITS)) as usize;
    let rest = hash << REGISTER_BITS;
    let max_rank = 64 - REGISTER_BITS + 1;
    let rank = (rest.leading_zeros() + 1).min(max_rank) as u8;
    if let Some(register) = registers.get_mut(index) {
        *register = (*register).max(rank);
    }
}

/// Users of crash events over the last [`WINDOW_MINUTES`] minutes, as mergeable registers:
/// one set per minute (4.6 KiB in all), merged when read.
#[derive(Debug)]
pub(crate) struct CrashUserWindow {
    /// (minute since the epoch, registers of that minute), indexed by minute modulo the window.
    slots: Vec<(i64, UserRegisters)>,
}

impl Default for CrashUserWindow {
    fn default() -> Self {
        CrashUserWindow {
            slots: vec![(i64::MIN, [0; USER_REGISTERS]); WINDOW_MINUTES as usize],
        }
    }
}

impl CrashUserWindow {
    /// Counts the user with [`stable_hash`] `hash` at `now_ms`.
    pub(crate) fn insert(&mut self, now_ms: i64, hash: u64) {
        let minute = now_ms.div_euclid(60_000);
        let len = self.slots.len() as i64;
        if let Some(slot) = self.slots.get_mut(minute.rem_euclid(len) as usize) {
            if slot.0 != minute {
                *slot = (minute, [0; USER_REGISTERS]);
            }
            add_to_user_registers(&mut slot.1, hash);
        }
    }

    /// The registers of the window ending at `now_ms`.
    pub(crate) fn registers(&self, now_ms: i64) -> UserRegisters {
        let minute = now_ms.div_euclid(60_000);
        let mut merged = [0; USER_REGISTERS];
        for (slot_minute, registers) in &self.slots {
            if *slot_minute <= minute
                && minute.saturating_sub(*slot_minute) < self.slots.len() as i64
            {
                for (m, r) in merged.iter_mut().zip(registers) {
                    *m = (*m).max(*r);
                }
            }
        }
        merged
    }
}
