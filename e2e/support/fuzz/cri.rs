//! CRI calls: every RPC with hostile fields, and raw bytes that are no
//! protobuf at all as the message of every method.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use tonic::transport::Channel;

use super::{huge, truncate, Rng, Tally};

fn cri_id(r: &mut Rng, known: &[String]) -> String {
    match r.below(7) {
        0 | 1 if !known.is_empty() => r.pick(known).clone(),
        2 => String::new(),
        3 => huge(70_000),
        4 => "../../etc".into(),
        5 => hex::encode(r.bytes(32)),
        _ => hex::encode(r.bytes(3)),
    }
}

fn cri_text(r: &mut Rng) -> String {
    match r.below(6) {
        0 => String::new(),
        1 => huge(20_000),
        2 => "../../x".into(),
        3 => "名前\u{0}".into(),
        4 => "ok-name".into(),
        _ => hex::encode(r.bytes(4)),
    }
}

fn pod_config(r: &mut Rng, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: r.chance(80).then(|| cri::PodSandboxMetadata {
            name: cri_text(r),
            uid: cri_text(r),
            namespace: cri_text(r),
            attempt: r.next() as u32,
        }),
        hostname: cri_text(r),
        log_directory: if r.chance(50) {
            log_dir.display().to_string()
        } else {
            cri_text(r)
        },
        dns_config: r.chance(20).then(|| cri::DnsConfig {
            servers: vec![cri_text(r)],
            searches: vec![cri_text(r)],
            options: vec![cri_text(r)],
        }),
        port_mappings: if r.chance(20) {
            vec![cri::PortMapping {
                protocol: r.next() as i32,
                container_port: r.next() as i32,
                host_port: r.next() as i32,
                host_ip: cri_text(r),
            }]
        } else {
            vec![]
        },
        linux: r.chance(40).then(|| cri::LinuxPodSandboxConfig {
            cgroup_parent: cri_text(r),
            sysctls: [(cri_text(r), cri_text(r))].into_iter().collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(r: &mut Rng, image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: r.chance(80).then(|| cri::ContainerMetadata {
            name: cri_text(r),
            attempt: r.next() as u32,
        }),
        image: r.chance(80).then(|| cri::ImageSpec {
            image: if r.chance(50) {
                image.to_string()
            } else {
                cri_text(r)
            },
            ..Default::default()
        }),
        command: vec![cri_text(r)],
        args: vec![cri_text(r)],
        working_dir: cri_text(r),
        log_path: cri_text(r),
        envs: vec![cri::KeyValue {
            key: cri_text(r),
            value: cri_text(r),
        }],
        linux: r.chance(40).then(|| cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: r.next() as i64,
                cpu_shares: r.next() as i64,
                cpu_quota: r.next() as i64,
                oom_score_adj: r.next() as i64,
                cpuset_cpus: cri_text(r),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tonic status code's class for the tally (`Ok` for success).
fn code_class(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "ok",
        InvalidArgument => "InvalidArgument",
        NotFound => "NotFound",
        FailedPrecondition => "FailedPrecondition",
        AlreadyExists => "AlreadyExists",
        Unimplemented => "Unimplemented",
        DeadlineExceeded => "DeadlineExceeded",
        OutOfRange => "OutOfRange",
        ResourceExhausted => "ResourceExhausted",
        Internal => "Internal",
        Unknown => "Unknown",
        DataLoss => "DataLoss",
        Unavailable => "Unavailable",
        _ => "other",
    }
}

/// Runs `count` CRI calls (stopping at `limit`) into `tally`: typed calls
/// with hostile fields, and raw bytes as the message of every RPC.
#[allow(clippy::too_many_arguments)]
pub async fn fuzz_cri(
    channel: Channel,
    log_dir: &Path,
    image: &str,
    r: &mut Rng,
    count: usize,
    limit: Duration,
    tally: &mut Tally,
) {
    use k8s_cri::v1::image_service_client::ImageServiceClient;
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut im = ImageServiceClient::new(channel.clone());
    let mut known: Vec<String> = Vec::new();
    let start = Instant::now();
    for _ in 0..count {
        if start.elapsed() > limit {
            break;
        }
        let id = cri_id(r, &known);
        let pick = r.below(30);
        let (name, res): (&str, Result<Option<String>, tonic::Status>) = match pick {
            0 => (
                "Version",
                rt.version(cri::VersionRequest {
                    version: cri_text(r),
                })
                .await
                .map(|_| None),
            ),
            1 => {
                let c = pod_config(r, log_dir);
                let handler = if r.chance(80) {
                    String::new()
                } else {
                    cri_text(r)
                };
                let res = rt
                    .run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(c),
                        runtime_handler: handler,
                    })
                    .await;
                (
                    "RunPodSandbox",
                    res.map(|x| Some(x.into_inner().pod_sandbox_id)),
                )
            }
            2 => (
                "StopPodSandbox",
                rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(|_| None),
            ),
            3 => (
                "RemovePodSandbox",
                rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(|_| None),
            ),
            4 => (
                "PodSandboxStatus",
                rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            5 => (
                "ListPodSandbox",
                rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        id,
                        ..Default::default()
                    }),
                })
                .await
                .map(|_| None),
            ),
            6 => {
                let cfg = container_config(r, image);
                let pc = pod_config(r, log_dir);
                let res = rt
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: id,
                        config: Some(cfg),
                        sandbox_config: Some(pc),
                    })
                    .await;
                (
                    "CreateContainer",
                    res.map(|x| Some(x.into_inner().container_id)),
                )
            }
            7 => (
                "StartContainer",
                rt.start_container(cri::StartContainerRequest { container_id: id })
                    .await
                    .map(|_| None),
            ),
            8 => (
                "StopContainer",
                rt.stop_container(cri::StopContainerRequest {
                    container_id: id,
                    timeout: (r.next() % 3) as i64 - 1,
                })
                .await
                .map(|_| None),
            ),
            9 => (
                "RemoveContainer",
                rt.remove_container(cri::RemoveContainerRequest { container_id: id })
                    .await
                    .map(|_| None),
            ),
            10 => (
                "ListContainers",
                rt.list_containers(cri::ListContainersRequest {
                    filter: Some(cri::ContainerFilter {
                        id,
                        pod_sandbox_id: cri_id(r, &known),
                        ..Default::default()
                    }),
                })
                .await
                .map(|_| None),
            ),
            11 => (
                "ContainerStatus",
                rt.container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            12 => (
                "UpdateContainerResources",
                rt.update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: id,
                    linux: Some(cri::LinuxContainerResources {
                        memory_limit_in_bytes: r.next() as i64,
                        cpu_period: r.next() as i64,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(|_| None),
            ),
            13 => (
                "ReopenContainerLog",
                rt.reopen_container_log(cri::ReopenContainerLogRequest { container_id: id })
                    .await
                    .map(|_| None),
            ),
            14 => (
                "ExecSync",
                rt.exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec![cri_text(r)],
                    timeout: (r.next() % 3) as i64,
                })
                .await
                .map(|_| None),
            ),
            15 => (
                "Exec",
                rt.exec(cri::ExecRequest {
                    container_id: id,
                    cmd: vec![cri_text(r)],
                    tty: r.chance(50),
                    stdin: r.chance(50),
                    stdout: r.chance(50),
                    stderr: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            16 => (
                "Attach",
                rt.attach(cri::AttachRequest {
                    container_id: id,
                    stdin: r.chance(50),
                    tty: r.chance(50),
                    stdout: true,
                    stderr: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            17 => (
                "PortForward",
                rt.port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: id,
                    port: vec![r.next() as i32],
                })
                .await
                .map(|_| None),
            ),
            18 => (
                "ContainerStats",
                rt.container_stats(cri::ContainerStatsRequest { container_id: id })
                    .await
                    .map(|_| None),
            ),
            19 => (
                "ListContainerStats",
                rt.list_container_stats(cri::ListContainerStatsRequest {
                    filter: Some(cri::ContainerStatsFilter {
                        id,
                        ..Default::default()
                    }),
                })
                .await
                .map(|_| None),
            ),
            20 => (
                "PodSandboxStats",
                rt.pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: id })
                    .await
                    .map(|_| None),
            ),
            21 => (
                "ListPodSandboxStats",
                rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
                    .await
                    .map(|_| None),
            ),
            22 => (
                "UpdateRuntimeConfig",
                rt.update_runtime_config(cri::UpdateRuntimeConfigRequest {
                    runtime_config: Some(cri::RuntimeConfig {
                        network_config: Some(cri::NetworkConfig {
                            pod_cidr: cri_text(r),
                        }),
                    }),
                })
                .await
                .map(|_| None),
            ),
            23 => (
                "Status",
                rt.status(cri::StatusRequest {
                    verbose: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            24 => (
                "CheckpointContainer",
                rt.checkpoint_container(cri::CheckpointContainerRequest {
                    container_id: id,
                    location: cri_text(r),
                    timeout: r.next() as i64,
                })
                .await
                .map(|_| None),
            ),
            25 => {
                let res = rt.get_container_events(cri::GetEventsRequest {}).await;
                ("GetContainerEvents", res.map(|_| None))
            }
            26 => (
                "ListImages",
                im.list_images(cri::ListImagesRequest {
                    filter: Some(cri::ImageFilter {
                        image: Some(cri::ImageSpec {
                            image: cri_text(r),
                            ..Default::default()
                        }),
                    }),
                })
                .await
                .map(|_| None),
            ),
            27 => (
                "ImageStatus",
                im.image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: if r.chance(30) {
                            image.to_string()
                        } else {
                            cri_text(r)
                        },
                        ..Default::default()
                    }),
                    verbose: r.chance(50),
                })
                .await
                .map(|_| None),
            ),
            28 => {
                // Pulls name only the loopback registry's image or names
                // without a registry host (mirrored to loopback only).
                let name = match r.below(4) {
                    0 => image.to_string(),
                    1 => format!("{image}-nosuchtag"),
                    2 => "nosuchimage".into(),
                    _ => "UPPER!".into(),
                };
                (
                    "PullImage",
                    im.pull_image(cri::PullImageRequest {
                        image: Some(cri::ImageSpec {
                            image: name,
                            ..Default::default()
                        }),
                        auth: r.chance(20).then(|| cri::AuthConfig {
                            auth: cri_text(r),
                            ..Default::default()
                        }),
                        sandbox_config: None,
                    })
                    .await
                    .map(|_| None),
                )
            }
            _ => ("raw bytes", raw_call(&channel, r).await.map(|_| None)),
        };
        match res {
            Ok(new) => {
                tally.count("cri ok");
                if let Some(id) = new.filter(|s| !s.is_empty()) {
                    known.push(id);
                }
            }
            Err(st) => {
                let class = code_class(st.code());
                tally.count(&format!("cri {class}"));
                if matches!(class, "Internal" | "Unknown" | "DataLoss") {
                    tally.fault(format!("CRI {name}"), truncate(st.message(), 300));
                } else if matches!(class, "ResourceExhausted" | "other" | "Unavailable") {
                    tally.note(format!("CRI {name} {class}"), truncate(st.message(), 300));
                }
            }
        }
    }
}

/// Every CRI method path (both services).
pub const CRI_METHODS: &[&str] = &[
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.RuntimeService/RunPodSandbox",
    "/runtime.v1.RuntimeService/StopPodSandbox",
    "/runtime.v1.RuntimeService/RemovePodSandbox",
    "/runtime.v1.RuntimeService/PodSandboxStatus",
    "/runtime.v1.RuntimeService/ListPodSandbox",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/StartContainer",
    "/runtime.v1.RuntimeService/StopContainer",
    "/runtime.v1.RuntimeService/RemoveContainer",
    "/runtime.v1.RuntimeService/ListContainers",
    "/runtime.v1.RuntimeService/ContainerStatus",
    "/runtime.v1.RuntimeService/UpdateContainerResources",
    "/runtime.v1.RuntimeService/ReopenContainerLog",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/Exec",
    "/runtime.v1.RuntimeService/Attach",
    "/runtime.v1.RuntimeService/PortForward",
    "/runtime.v1.RuntimeService/ContainerStats",
    "/runtime.v1.RuntimeService/ListContainerStats",
    "/runtime.v1.RuntimeService/PodSandboxStats",
    "/runtime.v1.RuntimeService/ListPodSandboxStats",
    "/runtime.v1.RuntimeService/UpdateRuntimeConfig",
    "/runtime.v1.RuntimeService/Status",
    "/runtime.v1.RuntimeService/CheckpointContainer",
    "/runtime.v1.RuntimeService/GetContainerEvents",
    "/runtime.v1.RuntimeService/ListMetricDescriptors",
    "/runtime.v1.RuntimeService/ListPodSandboxMetrics",
    "/runtime.v1.RuntimeService/RuntimeConfig",
    "/runtime.v1.ImageService/ListImages",
    "/runtime.v1.ImageService/ImageStatus",
    "/runtime.v1.ImageService/PullImage",
    "/runtime.v1.ImageService/RemoveImage",
    "/runtime.v1.ImageService/ImageFsInfo",
];

/// Sends random bytes (not a valid protobuf, mostly) as the message of a
/// random CRI method.
async fn raw_call(channel: &Channel, r: &mut Rng) -> Result<(), tonic::Status> {
    let path = *r.pick(CRI_METHODS);
    let len = r.pick(&[0usize, 1, 7, 64, 4096]).to_owned();
    let body = r.bytes(len);
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    if path.as_str().ends_with("GetContainerEvents") {
        return grpc
            .server_streaming(tonic::Request::new(body), path, RawCodec)
            .await
            .map(drop);
    }
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(drop)
}

/// A codec that sends bytes as they are and ignores what comes back.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        use bytes::Buf;
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}
