//! Refused requests in the audit trail, without letting a flood of them grow it: the first
//! refusal of an address (or a token) for one reason in a minute is a record of its own,
//! the others of that minute are counted and written as one `api.denied.repeated` record
//! with their number when the minute is over. What a client sent (its path, the reason
//! quoting it) is cut to [`PATH_KEPT`] characters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::error::{ErrorKind, Result};
use crate::ops::Core;

/// How much of a refused request's path (and reason) the trail keeps.
pub const PATH_KEPT: usize = 256;
/// Refusals of one key within this long after its first are counted, not written.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys counted at once; past that, every new one counts under one shared key (many
/// addresses refused at once are a flood of their own, and memory stays bounded).
const MOST_KEYS: usize = 10_000;

/// Whose refusals are counted together: a token's, else an address's, for one error kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    who: String,
    kind: &'static str,
}

impl Key {
    pub fn of(actor: &Actor, kind: ErrorKind) -> Key {
        let who = actor.token_id.clone().or_else(|| actor.address.clone()).unwrap_or_else(|| actor.name.clone());
        Key { who, kind: kind.name() }
    }
}

/// Refusals counted in a minute that is over.
#[derive(Debug, Clone)]
pub struct Repeated {
    pub actor: Actor,
    pub kind: &'static str,
    /// Refusals after the first one (which has a record of its own).
    pub count: u64,
    pub since: DateTime<Utc>,
}

struct Window {
    opened: Instant,
    opened_at: DateTime<Utc>,
    more: u64,
    actor: Actor,
}

impl Window {
    fn repeated(self, kind: &'static str) -> Option<Repeated> {
        (self.more > 0).then_some(Repeated { actor: self.actor, kind, count: self.more, since: self.opened_at })
    }
}

/// What a refusal needs written.
pub struct Refused {
    /// It is the first of its minute: write it.
    pub first: bool,
    /// The count of the key's previous minute, over now: write it.
    pub repeated: Option<Repeated>,
}

/// The minutes being counted.
#[derive(Default)]
pub struct Refusals {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Refusals {
    /// Counts a refusal of `actor` for `kind` at `now`.
    pub fn refused(&self, actor: &Actor, kind: ErrorKind, now: Instant) -> Refused {
        let mut windows = self.windows.lock().expect("refusals lock");
        let mut key = Key::of(actor, kind);
        if windows.len() >= MOST_KEYS && !windows.contains_key(&key) {
            key = Key { who: "*".into(), kind: key.kind };
        }
        if let Some(open) = windows.get_mut(&key)
            && now.duration_since(open.opened) < WINDOW
        {
            open.more += 1;
            return Refused { first: false, repeated: None };
        }
        let fresh = Window { opened: now, opened_at: Utc::now(), more: 0, actor: actor.clone() };
        let previous = windows.insert(key.clone(), fresh);
        Refused { first: true, repeated: previous.and_then(|w| w.repeated(key.kind)) }
    }

    /// The minutes over at `now`, taken out (those with refusals to write).
    pub fn closed(&self, now: Instant) -> Vec<Repeated> {
        let mut windows = self.windows.lock().expect("refusals lock");
        let over: Vec<Key> =
            windows.iter().filter(|(_, w)| now.duration_since(w.opened) >= WINDOW).map(|(k, _)| k.clone()).collect();
        over.into_iter().filter_map(|k| windows.remove(&k).and_then(|w| w.repeated(k.kind))).collect()
    }

    /// Every minute still counted, taken out (at shutdown).
    pub fn drain(&self) -> Vec<Repeated> {
        let mut windows = self.windows.lock().expect("refusals lock");
        windows.drain().filter_map(|(k, w)| w.repeated(k.kind)).collect()
    }
}

/// Writes a minute's count of refusals.
pub async fn record_repeated(core: &Core, repeated: &Repeated) {
    let refused: Result<()> =
        Err(crate::error::Error::new(ErrorKind::Refused, format!("{} more refusals", repeated.count)));
    let details = serde_json::json!({
        "kind": repeated.kind, "count": repeated.count, "since": repeated.since, "until": Utc::now(),
    });
    crate::ops::audit::record_event(core, &repeated.actor, "api.denied.repeated", "-", &refused, details).await;
}

/// `text` cut to at most `most` characters (on a character boundary), marked when cut.
pub fn cut(text: &str, most: usize) -> String {
    match text.char_indices().nth(most) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::ActorKind;

    fn from(address: &str) -> Actor {
        Actor { address: Some(address.into()), ..Actor::new(ActorKind::Api, "unknown") }
    }

    #[test]
    fn one_record_a_minute_per_address_and_reason_then_the_count() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        let (a, b) = (from("127.0.0.9"), from("127.0.0.10"));
        assert!(refusals.refused(&a, ErrorKind::Forbidden, t0).first);
        for i in 0..499 {
            let r = refusals.refused(&a, ErrorKind::Forbidden, t0 + Duration::from_millis(i));
            assert!(!r.first && r.repeated.is_none());
        }
        // Another address, another reason: records of their own.
        assert!(refusals.refused(&b, ErrorKind::Forbidden, t0).first);
        assert!(refusals.refused(&a, ErrorKind::Unauthenticated, t0).first);
        assert!(refusals.closed(t0 + Duration::from_secs(59)).is_empty());
        // The next minute: a record again, and the last minute's count.
        let next = refusals.refused(&a, ErrorKind::Forbidden, t0 + WINDOW);
        assert!(next.first);
        assert_eq!(next.repeated.map(|r| r.count), Some(499));
        let over = refusals.closed(t0 + WINDOW);
        assert!(over.is_empty(), "the other minutes had nothing after their first");
        refusals.refused(&b, ErrorKind::Forbidden, t0 + WINDOW);
        refusals.refused(&b, ErrorKind::Forbidden, t0 + WINDOW);
        let drained = refusals.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].count, 1);
    }

    #[test]
    fn what_a_client_sent_is_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut(&"é".repeat(300), 256).chars().count(), 259);
        assert_eq!(cut(&"/".repeat(60_000), PATH_KEPT).len(), PATH_KEPT + 3);
    }
}
