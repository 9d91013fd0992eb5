//! CRI RuntimeService. `Version` and `Status` answer; the pod and container
//! lifecycle is not built yet, and every such call says so with UNIMPLEMENTED
//! rather than pretending to succeed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::engine::Engine;

/// The name berth reports as its runtime.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";

/// The gRPC RuntimeService over the engine.
pub struct Runtime {
    engine: Arc<Engine>,
}

impl Runtime {
    pub fn new(engine: Arc<Engine>) -> Self {
        Runtime { engine }
    }
}

/// Methods that answer UNIMPLEMENTED. They are written in the form
/// `#[async_trait]` expands to, because the attribute cannot see into a macro.
macro_rules! unimplemented_rpcs {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                _req: Request<cri::$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<cri::$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async {
                    Err(Status::unimplemented(concat!(
                        "berth does not implement ",
                        stringify!($name),
                        " yet"
                    )))
                })
            }
        )*
    };
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _req: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: false,
                reason: "PodLifecycleNotImplemented".into(),
                message: "berth serves the CRI ImageService; pod sandboxes and containers are not implemented yet".into(),
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "CNI networking is not implemented yet".into(),
            },
        ];
        let mut info = std::collections::HashMap::new();
        if req.into_inner().verbose {
            let c = &self.engine.config;
            let v = serde_json::json!({
                "root": c.root,
                "state": c.state,
                "defaultRuntimeHandler": c.runtime.default_handler,
                "runtimeHandlers": c.runtime.handlers,
                "registries": c.registries.keys().collect::<Vec<_>>(),
            });
            info.insert("config".to_string(), v.to_string());
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![],
            features: None,
        }))
    }

    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(Status::unimplemented(
            "berth does not implement get_container_events yet",
        ))
    }

    unimplemented_rpcs! {
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container(CreateContainerRequest) -> CreateContainerResponse;
        start_container(StartContainerRequest) -> StartContainerResponse;
        stop_container(StopContainerRequest) -> StopContainerResponse;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers(ListContainersRequest) -> ListContainersResponse;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
        exec(ExecRequest) -> ExecResponse;
        attach(AttachRequest) -> AttachResponse;
        port_forward(PortForwardRequest) -> PortForwardResponse;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    }
}
