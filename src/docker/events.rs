//! `GET /events`: the engine's events as Docker's JSON stream, with
//! `since`/`until` (replayed from the engine's bounded history) and filters
//! (`type`, `event`, `container`, `image`, `label`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::Query;
pub use super::filters::parse_filters;
use super::filters::{label_matches, Filters};
use super::time::{now_nanos, parse_point};
use super::{ApiError, Shared};
use crate::engine::events::Event;

pub fn routes() -> Router<Shared> {
    Router::new().route("/events", get(events))
}

#[derive(Deserialize)]
struct Params {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// True when `ev` passes every filter.
fn matches(ev: &Event, f: &Filters) -> bool {
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        f.get(key)
            .is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| test(v)))
    };
    let action = ev.action.split(':').next().unwrap_or("");
    let name = ev.attributes.get("name").map(String::as_str).unwrap_or("");
    let image = ev.attributes.get("image").map(String::as_str).unwrap_or("");
    any("type", &|v| v == ev.kind)
        && any("event", &|v| v == action || v == ev.action)
        && any("container", &|v| {
            ev.kind == "container" && (ev.id.starts_with(v) || v == name)
        })
        && any("image", &|v| {
            (ev.kind == "image" && (ev.id == v || v == name)) || image == v
        })
        && any("label", &|v| {
            label_matches(|k| ev.attributes.get(k).map(String::as_str), v)
        })
}

/// Docker's JSON form of an event.
pub fn to_json(ev: &Event) -> Value {
    let from = if ev.kind == "container" {
        ev.attributes.get("image").cloned()
    } else {
        None
    };
    let mut v = json!({
        "Type": ev.kind,
        "Action": ev.action,
        "Actor": {"ID": ev.id, "Attributes": ev.attributes},
        "scope": "local",
        "time": ev.time_nano / 1_000_000_000,
        "timeNano": ev.time_nano,
    });
    if ev.kind == "container" || ev.kind == "image" {
        v["status"] = json!(ev.action);
        v["id"] = json!(ev.id);
    }
    if let Some(f) = from {
        v["from"] = json!(f);
    }
    v
}

async fn events(State(d): State<Shared>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let now = now_nanos();
    let point = |s: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_point(s, now).map_err(|e| ApiError::bad_request(format!("{what}: {e}"))))
            .transpose()
    };
    let since = point(&p.since, "since")?;
    let until = point(&p.until, "until")?;
    let filters = parse_filters(p.filters.as_deref())?;
    let (past, mut rx) = d.engine.events.subscribe();
    let replay: Vec<Event> = match since {
        Some(s) => past
            .into_iter()
            .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
            .filter(|e| matches(e, &filters))
            .collect(),
        None => vec![],
    };
    let line = |e: &Event| Bytes::from(format!("{}\n", to_json(e)));
    let stream = async_stream(move |tx| async move {
        for e in &replay {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        loop {
            let wait = match until {
                Some(u) => {
                    let left = u - now_nanos();
                    if left <= 0 {
                        return;
                    }
                    Duration::from_nanos(left as u64)
                }
                None => Duration::from_secs(3600),
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Ok(e)) => {
                    if until.is_some_and(|u| e.time_nano > u) {
                        return;
                    }
                    if matches(&e, &filters) && tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return,
                Err(_) if until.is_some() => return,
                // Idle: check the client is still there.
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });
    Ok(([("content-type", "application/json")], stream).into_response())
}

/// A streaming body fed by a task through a channel; the task sees the
/// client leave when its sends fail.
pub fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(f(tx));
    let s = tokio_stream::wrappers::ReceiverStream::new(rx);
    Body::from_stream(futures::StreamExt::map(
        s,
        Ok::<_, std::convert::Infallible>,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(raw: &str) -> Filters {
        parse_filters(Some(raw)).unwrap()
    }

    #[test]
    fn filters_select_events() {
        let ev = Event::new("container", "exec_start: sh -c true", "abc123")
            .with("name", "web")
            .with("image", "busybox")
            .with("tier", "front");
        assert!(matches(&ev, &f(r#"{"type":["container"]}"#)));
        assert!(!matches(&ev, &f(r#"{"type":["image"]}"#)));
        assert!(matches(&ev, &f(r#"{"event":["exec_start"]}"#)));
        assert!(matches(&ev, &f(r#"{"container":["web"]}"#)));
        assert!(matches(&ev, &f(r#"{"container":["abc"]}"#)));
        assert!(!matches(&ev, &f(r#"{"container":["other"]}"#)));
        assert!(matches(&ev, &f(r#"{"label":["tier=front"]}"#)));
        assert!(matches(&ev, &f(r#"{"label":{"tier":true}}"#)));
        assert!(!matches(&ev, &f(r#"{"label":["tier=back"]}"#)));
        assert!(matches(&ev, &f(r#"{"image":["busybox"]}"#)));
        assert!(parse_filters(Some("[1]")).is_err());
    }

    #[test]
    fn json_shape() {
        let ev = Event::new("container", "die", "abc")
            .with("exitCode", "3")
            .with("image", "bb");
        let v = to_json(&ev);
        assert_eq!(v["status"], "die");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["from"], "bb");
        assert_eq!(v["time"], ev.time_nano / 1_000_000_000);
    }
}
