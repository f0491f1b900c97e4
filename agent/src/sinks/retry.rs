//! The sinks' retry policy: a validated exponential [`Backoff`] and the [`RetryDelays`] it
//! produces for one run of failures, with jitter, honouring a backend's `Retry-After`.

use std::time::Duration;

/// Longest `Retry-After` honoured; a longer one (or a bogus one) is cut to this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Exponential backoff between retries of a failed send: the n-th retry (from 0) waits a random
/// time between `initial` and `min(max, initial × multiplier^n)` ("full jitter" above the
/// initial delay, so senders that failed together do not retry together).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
}

/// A backoff that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff initial delay must be greater than zero")]
    ZeroInitial,
    #[error("backoff maximum delay {max:?} is shorter than the initial delay {initial:?}")]
    MaxBelowInitial { initial: Duration, max: Duration },
    #[error("backoff multiplier {0} must be a finite number of at least 1")]
    Multiplier(f64),
}

impl Backoff {
    /// Default first delay: 100 ms.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
    /// Default longest delay: 30 s.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(30);
    /// Default growth per retry: ×2.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;

    /// A backoff from `initial` (> 0) growing by `multiplier` (≥ 1) up to `max` (≥ `initial`).
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(BackoffError::Multiplier(multiplier));
        }
        Ok(Backoff {
            initial,
            max,
            multiplier,
        })
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay (a `Retry-After` may ask for longer).
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Growth per retry.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Delays for a new run of failures.
    pub fn delays(&self) -> RetryDelays {
        RetryDelays {
            backoff: *self,
            retries: 0,
        }
    }
}

impl Default for Backoff {
    /// 100 ms, doubling, up to 30 s.
    fn default() -> Self {
        Backoff {
            initial: Self::DEFAULT_INITIAL,
            max: Self::DEFAULT_MAX,
            multiplier: Self::DEFAULT_MULTIPLIER,
        }
    }
}

/// The delays of one run of failures; [`RetryDelays::reset`] after a success.
#[derive(Clone, Debug)]
pub struct RetryDelays {
    backoff: Backoff,
    retries: u32,
}

impl RetryDelays {
    /// The longest the next delay may be (before `Retry-After`).
    pub fn ceiling(&self) -> Duration {
        let Backoff {
            initial,
            max,
            multiplier,
        } = self.backoff;
        let exponent = i32::try_from(self.retries).unwrap_or(i32::MAX);
        let grown = initial.as_secs_f64() * multiplier.powi(exponent);
        if grown.is_finite() && grown < max.as_secs_f64() {
            Duration::from_secs_f64(grown).max(initial)
        } else {
            max
        }
    }

    /// The wait before the next retry: a jittered exponential delay, but never shorter than
    /// the backend's `retry_after` (itself capped at [`RETRY_AFTER_CAP`]).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let low = u64::try_from(self.backoff.initial.as_nanos()).unwrap_or(u64::MAX);
        let high = u64::try_from(self.ceiling().as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rand::random_range(low..=high.max(low)));
        self.retries = self.retries.saturating_add(1);
        match retry_after {
            Some(after) => jittered.max(after.min(RETRY_AFTER_CAP)),
            None => jittered,
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.retries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nonsense backoffs are refused with a message naming what is wrong.
    #[test]
    fn backoff_is_validated() {
        let ms = Duration::from_millis;
        assert_eq!(
            Backoff::new(Duration::ZERO, ms(10), 2.0),
            Err(BackoffError::ZeroInitial)
        );
        let err = Backoff::new(ms(10), ms(5), 2.0).unwrap_err();
        assert!(err.to_string().contains("maximum delay"), "{err}");
        assert_eq!(
            Backoff::new(ms(10), ms(50), 0.5),
            Err(BackoffError::Multiplier(0.5))
        );
        assert!(Backoff::new(ms(10), ms(50), f64::NAN).is_err());
        assert!(Backoff::new(ms(10), ms(10), 1.0).is_ok());
        let default = Backoff::default();
        assert_eq!(
            Backoff::new(default.initial(), default.max(), default.multiplier()),
            Ok(default)
        );
    }

    /// Delays stay between the initial delay and an exponentially growing ceiling capped at
    /// `max`, and start over after `reset`.
    #[test]
    fn delays_grow_exponentially_with_jitter_and_cap() {
        let backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 2.0).unwrap();
        let mut delays = backoff.delays();
        let expected_ceilings = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ceiling in expected_ceilings {
            assert_eq!(delays.ceiling(), Duration::from_millis(ceiling));
            let delay = delays.next_delay(None);
            assert!(delay >= Duration::from_millis(100), "{delay:?}");
            assert!(delay <= Duration::from_millis(ceiling), "{delay:?}");
        }
        for _ in 0..10_000 {
            delays.next_delay(None);
        }
        assert_eq!(delays.ceiling(), Duration::from_secs(2));
        delays.reset();
        assert_eq!(delays.ceiling(), Duration::from_millis(100));
    }

    /// A backend's `Retry-After` is honoured even beyond `max`, up to the cap.
    #[test]
    fn retry_after_is_honoured() {
        let mut delays = Backoff::default().delays();
        assert_eq!(
            delays.next_delay(Some(Duration::from_secs(45))),
            Duration::from_secs(45)
        );
        assert_eq!(
            delays.next_delay(Some(Duration::from_secs(86_400))),
            RETRY_AFTER_CAP
        );
        let short = delays.next_delay(Some(Duration::from_millis(1)));
        assert!(short >= Backoff::DEFAULT_INITIAL);
    }
}
