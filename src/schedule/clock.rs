//! The scheduler's clock: wall-clock time and waiting for a moment. The daemon uses the
//! system clock; tests drive a [`ManualClock`] so that days pass without anybody waiting.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// Wall-clock time for the scheduler.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// A monotonic sleep does not see wall-clock jumps (NTP corrections, a suspended VM), so
/// a long wait is cut into pieces and the wall clock re-read after each.
const LONGEST_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let Ok(left) = (at - Utc::now()).to_std() else { return };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(LONGEST_SLEEP)).await;
            }
        })
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves the clock to `to` (never backwards) and wakes every sleeper whose moment came.
    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_modify(|now| *now = (*now).max(to));
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            while *changes.borrow_and_update() < at {
                if changes.changed().await.is_err() {
                    // The clock is gone: its time will never come.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_their_moment_comes() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let sleeper = tokio::spawn(clock.sleep_until(start + chrono::Duration::hours(24)));
        clock.advance(chrono::Duration::hours(23));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke an hour early");
        clock.advance(chrono::Duration::hours(1));
        sleeper.await.unwrap();
        clock.set(start); // never backwards
        assert_eq!(clock.now(), start + chrono::Duration::hours(24));
    }

    #[tokio::test]
    async fn system_clock_returns_at_once_for_the_past() {
        SystemClock.sleep_until(Utc::now() - chrono::Duration::seconds(5)).await;
    }
}
