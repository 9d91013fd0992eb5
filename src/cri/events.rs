//! GetContainerEvents (the kubelet's evented PLEG) on the engine's event
//! bus (`engine::events`): create, start, die and destroy of containers
//! become CREATED, STARTED, STOPPED and DELETED, each with the pod's status
//! and its containers' statuses at that moment.
//!
//! A container's exit is recorded when its monitor exits: the stream
//! refreshes that container on the monitor's exit notice, so STOPPED comes
//! without anyone polling ContainerStatus.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::engine::events::Event;
use crate::engine::Engine;

/// The CRI event type of an engine container event, if it has one.
pub fn event_type(action: &str) -> Option<cri::ContainerEventType> {
    Some(match action {
        "create" => cri::ContainerEventType::ContainerCreatedEvent,
        "start" => cri::ContainerEventType::ContainerStartedEvent,
        "die" => cri::ContainerEventType::ContainerStoppedEvent,
        "destroy" => cri::ContainerEventType::ContainerDeletedEvent,
        _ => return None,
    })
}

/// The stream of a GetContainerEvents call, from now on.
pub fn stream(engine: Arc<Engine>) -> ReceiverStream<Result<cri::ContainerEventResponse, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (_, mut events) = engine.events.subscribe();
    let mut exits = engine.monitor_exits.subscribe();
    tokio::spawn(async move {
        // Two refreshes racing on one exit may both report it (the engine's
        // `die` is not compare-and-set): one STOPPED per start is passed on.
        let mut stopped = std::collections::HashSet::new();
        loop {
            let ev: Event = tokio::select! {
                _ = tx.closed() => return,
                e = events.recv() => match e {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "container event stream fell behind");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                },
                x = exits.recv() => {
                    // Records the exit, which emits the container's `die`.
                    if let Ok(id) = x {
                        let _ = engine.refreshed(&id);
                    }
                    continue;
                }
            };
            let Some(kind) = (ev.kind == "container")
                .then(|| event_type(&ev.action))
                .flatten()
            else {
                continue;
            };
            match kind {
                cri::ContainerEventType::ContainerStoppedEvent => {
                    if !stopped.insert(ev.id.clone()) {
                        continue;
                    }
                }
                cri::ContainerEventType::ContainerDeletedEvent
                | cri::ContainerEventType::ContainerStartedEvent => {
                    stopped.remove(&ev.id);
                }
                cri::ContainerEventType::ContainerCreatedEvent => {}
            }
            let Some(resp) = response(&engine, &ev, kind) else {
                continue;
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

fn response(
    engine: &Engine,
    ev: &Event,
    kind: cri::ContainerEventType,
) -> Option<cri::ContainerEventResponse> {
    let pod_id = ev.attributes.get(crate::engine::docker::POD_ATTRIBUTE)?;
    let pod = engine.pod(pod_id).ok();
    let containers_statuses = engine
        .pod_containers(pod_id)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            super::convert::container_status(
                c,
                engine.container_resources(c),
                engine.container_identity(c),
            )
        })
        .collect();
    Some(cri::ContainerEventResponse {
        container_id: ev.id.clone(),
        container_event_type: kind as i32,
        created_at: ev.time_nano,
        pod_sandbox_status: pod.as_ref().map(super::convert::pod_status),
        containers_statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_to_cri_types() {
        assert_eq!(
            event_type("die"),
            Some(cri::ContainerEventType::ContainerStoppedEvent)
        );
        assert_eq!(
            event_type("destroy"),
            Some(cri::ContainerEventType::ContainerDeletedEvent)
        );
        assert_eq!(event_type("pause"), None);
    }
}
