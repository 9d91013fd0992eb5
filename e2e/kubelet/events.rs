//! GetContainerEvents (evented PLEG): a container's create, start, exit and
//! removal arrive as CREATED, STARTED, STOPPED and DELETED, with the pod's
//! status and its containers' statuses.

use std::time::Duration;

use k8s_cri::v1::{ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest};

use super::Env;
use crate::support::pods;

async fn next(s: &mut tonic::Streaming<ContainerEventResponse>) -> ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(60), s.message())
        .await
        .expect("an event within the safety limit")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test]
async fn container_life_cycle_arrives_as_events() {
    let mut e = Env::new().await;
    let mut stream =
        e.rt.get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
    let pod_cfg = e.pod_config("events");
    let pod = e.pod(&pod_cfg).await;
    // Exits by itself: nobody polls its status meanwhile.
    let (cfg, _) = e.container("short", "sleep 1; exit 3");
    let id = e.run(&pod, &cfg, &pod_cfg).await;

    let mut got: Vec<ContainerEventResponse> = Vec::new();
    while got.len() < 3 {
        let ev = next(&mut stream).await;
        if ev.container_id == id {
            got.push(ev);
        }
    }
    let kinds: Vec<i32> = got.iter().map(|e| e.container_event_type).collect();
    assert_eq!(
        kinds,
        [
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            ContainerEventType::ContainerStoppedEvent as i32,
        ]
    );
    let stopped = &got[2];
    assert_eq!(
        stopped.pod_sandbox_status.as_ref().map(|p| p.id.as_str()),
        Some(pod.as_str())
    );
    let st = stopped
        .containers_statuses
        .iter()
        .find(|c| c.id == id)
        .expect("the container's status rides along");
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 3)
    );
    assert!(got.windows(2).all(|w| w[0].created_at <= w[1].created_at));

    pods::remove(&mut e.rt, &id).await.unwrap();
    loop {
        let ev = next(&mut stream).await;
        if ev.container_id == id {
            assert_eq!(
                ev.container_event_type,
                ContainerEventType::ContainerDeletedEvent as i32
            );
            assert!(ev.containers_statuses.iter().all(|c| c.id != id));
            break;
        }
    }
    e.remove_all_pods().await;
}
