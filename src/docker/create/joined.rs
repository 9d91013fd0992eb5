//! `container:<name|id>` in `NetworkMode`, `PidMode` and `IpcMode`: the
//! namespaces a create takes from another container (the engine's
//! [`JoinedNamespaces`]), and Docker's refusals of options that cannot go
//! with a joined network (its `runconfig` words).

use serde_json::Value;

use super::CreateRequest;
use crate::docker::{ApiError, Shared};
use crate::engine::joined::JoinedNamespaces;

/// The name or id after `container:`, if `mode` is one.
pub fn target(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

/// Resolves the targets of a create's `container:` modes to full ids and
/// refuses what Docker refuses with them. `body` is the request as stored:
/// its `NetworkMode` names the target by full id, as Docker's inspect does.
pub fn joined_namespaces(
    d: &Shared,
    req: &CreateRequest,
    body: &mut Value,
) -> Result<JoinedNamespaces, ApiError> {
    let hc = &req.host_config;
    let mut out = JoinedNamespaces::default();
    if let Some(t) = target(&hc.network_mode) {
        if t.is_empty() {
            return Err(ApiError::bad_request(
                "Invalid network mode: invalid container format container:<name|id>",
            ));
        }
        check_network_conflicts(req, body)?;
        let id = d.container(t)?.id;
        if let Some(m) = body
            .get_mut("HostConfig")
            .and_then(|h| h.get_mut("NetworkMode"))
        {
            *m = Value::String(format!("container:{id}"));
        }
        out.network = Some(id);
    }
    if let Some(t) = target(&hc.pid_mode) {
        if t.is_empty() {
            return Err(ApiError::bad_request(
                "invalid PID mode: invalid container format container:<name|id>",
            ));
        }
        out.pid = Some(d.container(t)?.id);
    }
    if let Some(t) = target(&hc.ipc_mode) {
        if t.is_empty() {
            return Err(ApiError::bad_request(
                "invalid IPC mode: invalid container format container:<name|id>",
            ));
        }
        let donor = d.container(t)?;
        // Docker's default IPC mode is private: only a donor made with
        // `--ipc shareable` lends its namespace.
        let shareable =
            super::stored_request(&donor).is_some_and(|r| r.host_config.ipc_mode == "shareable");
        if !shareable {
            return Err(ApiError::bad_request(format!(
                "container {t}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
            )));
        }
        out.ipc = Some(donor.id);
    }
    Ok(out)
}

/// Docker's `validateNetContainerMode`, in its order.
fn check_network_conflicts(req: &CreateRequest, body: &Value) -> Result<(), ApiError> {
    let hc = &req.host_config;
    let conflict = |what: &str| {
        Err(ApiError::bad_request(format!(
            "conflicting options: {what}"
        )))
    };
    if !req.hostname.is_empty() {
        return conflict("hostname and the network mode");
    }
    let links = body
        .pointer("/HostConfig/Links")
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    if links {
        return conflict(
            "container type network can't be used with links. This would result in undefined behavior",
        );
    }
    if hc.dns.as_ref().is_some_and(|v| !v.is_empty()) {
        return conflict("dns and the network mode");
    }
    if hc.extra_hosts.as_ref().is_some_and(|v| !v.is_empty()) {
        return conflict("custom host-to-IP mapping and the network mode");
    }
    let endpoints = body
        .pointer("/NetworkingConfig/EndpointsConfig")
        .and_then(Value::as_object);
    let ep_mac = endpoints.is_some_and(|eps| {
        eps.values().any(|ep| {
            ep.get("MacAddress")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty())
        })
    });
    let mac = body
        .get("MacAddress")
        .and_then(Value::as_str)
        .is_some_and(|m| !m.is_empty());
    if mac || ep_mac {
        return conflict("mac-address and the network mode");
    }
    if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || hc.publish_all_ports {
        return conflict("port publishing and the container type network mode");
    }
    if req.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
        return conflict("port exposing and the container type network mode");
    }
    if let Some(eps) = endpoints {
        // The CLI sends the mode itself as an endpoint; any other network
        // would be a second attachment of a namespace that is not its own.
        if eps.keys().any(|k| *k != hc.network_mode) {
            return Err(ApiError::bad_request(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        let aliases = eps.values().any(|ep| {
            ep.get("Aliases")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
        if aliases {
            return Err(ApiError::bad_request(
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: Value) -> Option<String> {
        let req: CreateRequest = serde_json::from_value(body.clone()).unwrap();
        check_network_conflicts(&req, &body)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn docker_refusals_with_a_joined_network() {
        let with = |extra: Value| {
            let mut b =
                serde_json::json!({"Image": "x", "HostConfig": {"NetworkMode": "container:a"}});
            for (k, v) in extra.as_object().unwrap() {
                if k == "HostConfig" {
                    for (hk, hv) in v.as_object().unwrap() {
                        b["HostConfig"][hk] = hv.clone();
                    }
                } else {
                    b[k] = v.clone();
                }
            }
            refusal(b).unwrap_or_default()
        };
        assert_eq!(with(serde_json::json!({})), "");
        let ep = serde_json::json!({"NetworkingConfig": {"EndpointsConfig": {"container:a": {}}}});
        assert_eq!(with(ep), "");
        for (extra, want) in [
            (
                serde_json::json!({"Hostname": "h"}),
                "hostname and the network mode",
            ),
            (
                serde_json::json!({"HostConfig": {"Links": ["b:b"]}}),
                "can't be used with links",
            ),
            (
                serde_json::json!({"HostConfig": {"Dns": ["1.1.1.1"]}}),
                "dns and the network mode",
            ),
            (
                serde_json::json!({"HostConfig": {"ExtraHosts": ["h:1.2.3.4"]}}),
                "custom host-to-IP",
            ),
            (
                serde_json::json!({"MacAddress": "02:42:ac:11:00:02"}),
                "mac-address",
            ),
            (
                serde_json::json!({"NetworkingConfig": {"EndpointsConfig": {"container:a": {"MacAddress": "02:42:ac:11:00:02"}}}}),
                "mac-address",
            ),
            (
                serde_json::json!({"HostConfig": {"PublishAllPorts": true}}),
                "port publishing",
            ),
            (
                serde_json::json!({"ExposedPorts": {"80/tcp": {}}}),
                "port exposing",
            ),
            (
                serde_json::json!({"NetworkingConfig": {"EndpointsConfig": {"other": {}}}}),
                "cannot be connected to any other network",
            ),
        ] {
            let got = with(extra.clone());
            assert!(got.contains(want), "{extra}: {got:?}");
        }
    }
}
