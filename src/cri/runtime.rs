//! CRI RuntimeService: thin translation onto the engine; errors map to
//! precise gRPC codes, never a fake success.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use std::collections::HashMap;

use super::convert;
use super::engine_status;
use crate::engine::Engine;

/// The name berth reports as its runtime.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";

/// The gRPC RuntimeService over the engine.
pub struct Runtime {
    engine: Arc<Engine>,
    /// Where Exec/Attach/PortForward requests wait for their client; None
    /// when no streaming server runs.
    streaming: Option<Arc<crate::streaming::Streaming>>,
}

impl Runtime {
    pub fn new(engine: Arc<Engine>) -> Self {
        Runtime {
            engine,
            streaming: None,
        }
    }

    /// Serves Exec, Attach and PortForward through `streaming`.
    pub fn with_streaming(mut self, streaming: Arc<crate::streaming::Streaming>) -> Self {
        self.streaming = Some(streaming);
        self
    }

    fn streaming(&self) -> Result<&crate::streaming::Streaming, Status> {
        self.streaming
            .as_deref()
            .ok_or_else(|| Status::unavailable("the streaming server is not running"))
    }

    /// Resolves a full or unique-prefix pod id.
    fn pod_id(&self, id: &str) -> Result<String, Status> {
        let pods = self
            .engine
            .pods()
            .map_err(|e| engine_status("failed to list pod sandboxes", e))?;
        let id = unique(id, pods.iter().map(|p| p.id.as_str()), "pod sandbox")?;
        tracing::Span::current().record("pod", id.as_str());
        Ok(id)
    }

    /// Resolves a full or unique-prefix container id.
    fn container_id(&self, id: &str) -> Result<String, Status> {
        let list = self
            .engine
            .store
            .list::<crate::engine::records::ContainerRecord>(crate::engine::CONTAINERS)
            .map_err(|e| Status::internal(e.to_string()))?;
        let id = unique(id, list.iter().map(|(k, _)| k.as_str()), "container")?;
        tracing::Span::current().record("container", id.as_str());
        Ok(id)
    }
}

impl Runtime {
    fn status_of(&self, c: &crate::engine::records::ContainerRecord) -> cri::ContainerStatus {
        convert::container_status(
            c,
            self.engine.container_resources(c),
            self.engine.container_identity(c),
        )
    }

    fn stats_of(
        &self,
        c: &crate::engine::records::ContainerRecord,
    ) -> Result<cri::ContainerStats, Status> {
        let usage = self.engine.container_usage(c).map_err(|e| {
            engine_status(&format!("failed to read stats of container {}", c.id), e)
        })?;
        let mountpoint = self.engine.config.root.display().to_string();
        Ok(convert::container_stats(c, usage.as_ref(), &mountpoint))
    }

    /// One sample of `pods` (cgroups, writable layers, netns counters).
    async fn samples(
        &self,
        pods: Vec<crate::engine::records::PodRecord>,
    ) -> Result<Vec<crate::engine::samples::PodSample>, Status> {
        self.engine
            .sample_pods(pods)
            .await
            .map_err(|e| engine_status("failed to read pod stats", e))
    }

    fn pod_stats_of(&self, s: &crate::engine::samples::PodSample) -> cri::PodSandboxStats {
        let mountpoint = self.engine.config.root.display().to_string();
        let containers = s
            .containers
            .iter()
            .map(|(c, u)| convert::container_stats(c, u.as_ref(), &mountpoint))
            .collect();
        convert::pod_stats(s, containers)
    }
}

fn unique<'a>(id: &str, ids: impl Iterator<Item = &'a str>, what: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!("a {what} id is required")));
    }
    let hits: Vec<&str> = ids.filter(|c| c.starts_with(id)).collect();
    match hits.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Status::not_found(super::bounded(format!(
            "{what} {id} not found"
        )))),
        _ => match hits.iter().find(|h| **h == id) {
            Some(exact) => Ok(exact.to_string()),
            None => Err(Status::invalid_argument(super::bounded(format!(
                "{what} id prefix {id} is ambiguous"
            )))),
        },
    }
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
        let problem = self.engine.runtime_problem();
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: problem.is_none(),
                reason: if problem.is_some() {
                    "CgroupLayoutUnusable".into()
                } else {
                    String::new()
                },
                message: problem.unwrap_or_default(),
            },
            match self.engine.network.ready() {
                Ok(_) => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Err(reason) => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: reason,
                },
            },
        ];
        let mut info = HashMap::new();
        if req.into_inner().verbose {
            let c = &self.engine.config;
            let v = serde_json::json!({
                "root": c.root,
                // critest looks for idmapped-mount support next to this.
                "stateDir": c.root.join("containers"),
                "state": c.state,
                "defaultRuntimeHandler": c.runtime.default_handler,
                "runtimeHandlers": c.runtime.handlers,
                "runtimeHandlerFeatures": self.engine.handler_features,
                "registries": c.registries.keys().collect::<Vec<_>>(),
            });
            info.insert("config".to_string(), v.to_string());
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: convert::runtime_handlers(
                &self.engine.config.runtime.default_handler,
                &self.engine.handler_features,
            ),
            // SupplementalGroupsPolicy Strict leaves out the image's groups
            // (src/runtime/process.rs).
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("a pod sandbox config is required"))?;
        let id = self
            .engine
            .run_pod_sandbox(config, &req.runtime_handler)
            .await
            .map_err(|e| engine_status("failed to run pod sandbox", e))?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = match self.pod_id(&req.into_inner().pod_sandbox_id) {
            Ok(id) => id,
            // Stopping a pod sandbox that is already gone succeeds (CRI: idempotent).
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Ok(Response::new(cri::StopPodSandboxResponse {}))
            }
            Err(s) => return Err(s),
        };
        self.engine
            .stop_pod_sandbox(&id)
            .await
            .map_err(|e| engine_status(&format!("failed to stop pod sandbox {id}"), e))?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = match self.pod_id(&req.into_inner().pod_sandbox_id) {
            Ok(id) => id,
            // Removing a pod sandbox that is already gone succeeds (CRI: idempotent).
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Ok(Response::new(cri::RemovePodSandboxResponse {}))
            }
            Err(s) => return Err(s),
        };
        self.engine
            .remove_pod_sandbox(&id)
            .await
            .map_err(|e| engine_status(&format!("failed to remove pod sandbox {id}"), e))?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        let id = self.pod_id(&req.pod_sandbox_id)?;
        let pod = self
            .engine
            .pod(&id)
            .map_err(|e| engine_status("failed to get pod sandbox status", e))?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({"record": pod}).to_string(),
            );
        }
        // The evented PLEG reads the pod and its containers in one answer.
        let containers_statuses = self
            .engine
            .pod_containers(&id)
            .map_err(|e| engine_status("failed to list pod containers", e))?
            .iter()
            .map(|c| self.status_of(c))
            .collect();
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::pod_status(&pod)),
            info,
            containers_statuses,
            timestamp: crate::engine::records::now_nanos(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = req.into_inner().filter;
        let pods = self
            .engine
            .pods()
            .map_err(|e| engine_status("failed to list pod sandboxes", e))?;
        let items = pods
            .iter()
            .filter(|p| convert::pod_matches(p, filter.as_ref()))
            .map(convert::pod)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let id = self.pod_id(&req.pod_sandbox_id)?;
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("a container config is required"))?;
        let cid = self
            .engine
            .create_container(&id, config)
            .await
            .map_err(|e| engine_status(&format!("failed to create container in pod {id}"), e))?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: cid,
        }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = self.container_id(&req.into_inner().container_id)?;
        self.engine
            .start_container(&id)
            .await
            .map_err(|e| engine_status(&format!("failed to start container {id}"), e))?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = req.into_inner();
        let id = match self.container_id(&req.container_id) {
            Ok(id) => id,
            // Stopping a container that is already gone succeeds: the kubelet
            // relies on stop being idempotent (CRI, like StopPodSandbox).
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Ok(Response::new(cri::StopContainerResponse {}))
            }
            Err(s) => return Err(s),
        };
        let timeout = std::time::Duration::from_secs(req.timeout.max(0) as u64);
        match self.engine.stop_container(&id, timeout).await {
            // Removed while this call waited for the container's lock.
            Ok(()) | Err(crate::engine::Error::NotFound(_)) => {}
            Err(e) => return Err(engine_status(&format!("failed to stop container {id}"), e)),
        }
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let req = req.into_inner();
        let id = match self.container_id(&req.container_id) {
            Ok(id) => id,
            // Removing a container that is already gone succeeds.
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Ok(Response::new(cri::RemoveContainerResponse {}))
            }
            Err(s) => return Err(s),
        };
        self.engine
            .remove_container(&id)
            .await
            .map_err(|e| engine_status(&format!("failed to remove container {id}"), e))?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = req.into_inner().filter;
        let list = self
            .engine
            .containers()
            .map_err(|e| engine_status("failed to list containers", e))?;
        let containers = list
            .iter()
            .filter(|c| convert::container_matches(c, filter.as_ref()))
            .map(convert::container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        let rec = self
            .engine
            .refreshed(&id)
            .map_err(|e| engine_status("failed to get container status", e))?
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({"record": rec}).to_string(),
            );
        }
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(self.status_of(&rec)),
            info,
        }))
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        let timeout = (req.timeout > 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
        let out = self
            .engine
            .exec_sync(&id, req.cmd, timeout)
            .await
            .map_err(|e| engine_status(&format!("failed to exec in container {id}"), e))?;
        if out.timed_out {
            return Err(Status::deadline_exceeded(format!(
                "command in container {id} timed out after {}s",
                req.timeout
            )));
        }
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        let driver = match self.engine.config.runtime.cgroup_driver {
            crate::config::CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
            crate::config::CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        let res = req
            .linux
            .ok_or_else(|| Status::invalid_argument("linux resources are required"))?;
        self.engine
            .update_container_resources(&id, &res)
            .await
            .map_err(|e| {
                engine_status(&format!("failed to update resources of container {id}"), e)
            })?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = self.container_id(&req.into_inner().container_id)?;
        self.engine.reopen_container_log(&id).await.map_err(|e| {
            engine_status(&format!("failed to reopen the log of container {id}"), e)
        })?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = self.container_id(&req.into_inner().container_id)?;
        let rec = self
            .engine
            .refreshed(&id)
            .map_err(|e| engine_status("failed to read container stats", e))?
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.stats_of(&rec)?),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let list = self
            .engine
            .containers()
            .map_err(|e| engine_status("failed to list container stats", e))?;
        let mut stats = Vec::new();
        for c in list.iter().filter(|c| {
            (f.id.is_empty() || c.id.starts_with(&f.id))
                && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
                && f.label_selector
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
        }) {
            stats.push(self.stats_of(c)?);
        }
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = self.pod_id(&req.into_inner().pod_sandbox_id)?;
        let pod = self
            .engine
            .pod(&id)
            .map_err(|e| engine_status("failed to read pod stats", e))?;
        let samples = self.samples(vec![pod]).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: samples.first().map(|s| self.pod_stats_of(s)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = req.into_inner().filter.unwrap_or_default();
        let pods = self
            .engine
            .pods()
            .map_err(|e| engine_status("failed to list pod stats", e))?;
        let wanted = pods
            .into_iter()
            .filter(|p| {
                (f.id.is_empty() || p.id.starts_with(&f.id))
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| p.config.labels.get(k) == Some(v))
            })
            .collect();
        let stats = self
            .samples(wanted)
            .await?
            .iter()
            .map(|s| self.pod_stats_of(s))
            .collect();
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(Box::pin(super::events::stream(
            self.engine.clone(),
        ))))
    }

    async fn exec(
        &self,
        req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be set",
            ));
        }
        if req.tty && req.stderr {
            return Err(Status::invalid_argument(
                "tty and stderr cannot both be set",
            ));
        }
        self.engine
            .check_exec(&id, &req.cmd)
            .map_err(|e| engine_status(&format!("failed to exec in container {id}"), e))?;
        let url = self.streaming()?.url(crate::streaming::Request::Exec(
            crate::streaming::ExecRequest {
                container_id: id,
                cmd: req.cmd,
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            },
        ));
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        req: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be set",
            ));
        }
        self.engine
            .attach_socket(&id)
            .map_err(|e| engine_status(&format!("failed to attach to container {id}"), e))?;
        let url = self.streaming()?.url(crate::streaming::Request::Attach(
            crate::streaming::ExecRequest {
                container_id: id,
                cmd: Vec::new(),
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                // A terminal has one output stream.
                stderr: req.stderr && !req.tty,
            },
        ));
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let req = req.into_inner();
        let id = self.pod_id(&req.pod_sandbox_id)?;
        self.engine
            .port_forward_netns(&id)
            .map_err(|e| engine_status(&format!("failed to port-forward to pod {id}"), e))?;
        let url = self
            .streaming()?
            .url(crate::streaming::Request::PortForward { pod_id: id });
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.engine
            .set_pod_cidr(&cidr)
            .map_err(|e| engine_status("failed to update the runtime config", e))?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: super::metrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        let pods = self
            .engine
            .pods()
            .map_err(|e| engine_status("failed to list pod sandboxes", e))?;
        let pod_metrics = self
            .samples(pods)
            .await?
            .iter()
            .map(super::metrics::pod_metrics)
            .collect();
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics,
        }))
    }

    async fn checkpoint_container(
        &self,
        req: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        let req = req.into_inner();
        let id = self.container_id(&req.container_id)?;
        self.engine
            .checkpoint_container(&id, &req.location)
            .await
            .map_err(|e| engine_status(&format!("failed to checkpoint container {id}"), e))?;
        Ok(Response::new(cri::CheckpointContainerResponse {}))
    }
}
