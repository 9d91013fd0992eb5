//! The engine's event stream: what happened to containers and images, for
//! Docker's `/events` (streamed, with `since`/`until` replays from a bounded
//! history of recent events).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

/// How many past events are kept for `since` queries (Docker keeps 256).
const HISTORY: usize = 1024;

/// One event, in the terms of Docker's events API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, `daemon`.
    pub kind: &'static str,
    /// `create`, `start`, `die`, `destroy`, `pull`, `tag`, …
    pub action: String,
    /// The object's id (a container id, an image name or id).
    pub id: String,
    /// `name`, `image`, `exitCode`, labels, …
    pub attributes: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: &'static str, action: impl Into<String>, id: impl Into<String>) -> Self {
        Event {
            kind,
            action: action.into(),
            id: id.into(),
            attributes: BTreeMap::new(),
            time_nano: super::records::now_nanos(),
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }
}

/// Publishes events to live subscribers and keeps a bounded history.
pub struct Events {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(HISTORY).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl Events {
    /// Records and publishes an event.
    pub fn emit(&self, event: Event) {
        let mut h = self.history.lock().expect("events lock");
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(event.clone());
        // Sent while holding the lock: a subscriber sees each event exactly
        // once, either in its history snapshot or live.
        let _ = self.tx.send(event);
    }

    /// The recent events and a receiver for every event after them.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().expect("events lock");
        (h.iter().cloned().collect(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_subscribers_see_each_event_once() {
        let ev = Events::default();
        for i in 0..HISTORY + 5 {
            ev.emit(Event::new("container", "start", format!("c{i}")));
        }
        let (past, mut rx) = ev.subscribe();
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past[0].id, "c5");
        ev.emit(Event::new("image", "pull", "busybox").with("name", "busybox"));
        let next = rx.try_recv().unwrap();
        assert_eq!((next.kind, next.action.as_str()), ("image", "pull"));
        assert_eq!(next.attributes["name"], "busybox");
        assert!(rx.try_recv().is_err());
    }
}
