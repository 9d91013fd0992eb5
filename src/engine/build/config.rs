//! A build's image config as Docker writes it (kept as JSON, so Docker's
//! own fields — Healthcheck, Shell, OnBuild — and anything a base image
//! carries survive every step), with the changes each instruction makes.

use serde_json::{json, Map, Value};

use crate::build::dockerfile::{Command, Health};

/// Docker's PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image config being built.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig(pub Value);

impl ImageConfig {
    /// The config `FROM scratch` starts with.
    pub fn scratch() -> Self {
        ImageConfig(json!({
            "architecture": crate::image::manifest::host_platform().architecture,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }))
    }

    /// A base image's config blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !v.is_object() {
            return Err("image config is not a JSON object".into());
        }
        Ok(ImageConfig(v))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("JSON values serialize")
    }

    fn top(&mut self) -> &mut Map<String, Value> {
        if !self.0.is_object() {
            self.0 = json!({});
        }
        self.0.as_object_mut().expect("an object")
    }

    /// The `config` object (the run config), made if missing.
    pub fn run(&mut self) -> &mut Map<String, Value> {
        let top = self.top();
        let c = top.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        c.as_object_mut().expect("an object")
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get("config").and_then(|c| c.get(key))
    }

    fn string(&self, key: &str) -> String {
        self.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    }

    /// `Env` as pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect()
    }

    /// Sets one variable, replacing it in place or appending it.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| Value::String(format!("{k}={v}")))
            .collect();
        self.run().insert("Env".into(), Value::Array(list));
    }

    pub fn working_dir(&self) -> String {
        self.string("WorkingDir")
    }

    pub fn user(&self) -> String {
        self.string("User")
    }

    /// The SHELL for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        self.strings("Shell")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    pub fn onbuild(&self) -> Vec<String> {
        self.strings("OnBuild").unwrap_or_default()
    }

    pub fn has_cmd(&self) -> bool {
        self.get("Cmd").is_some_and(|c| !c.is_null())
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.run().insert(key.into(), value);
    }

    pub fn set_strings(&mut self, key: &str, v: Vec<String>) {
        self.set(key, json!(v));
    }

    /// Adds keys to one of the object-valued fields (Labels, ExposedPorts, Volumes).
    pub fn merge_map(&mut self, key: &str, entries: Vec<(String, Value)>) {
        let run = self.run();
        let m = run.entry(key).or_insert_with(|| json!({}));
        if !m.is_object() {
            *m = json!({});
        }
        let m = m.as_object_mut().expect("an object");
        for (k, v) in entries {
            m.insert(k, v);
        }
    }

    /// The command of CMD/ENTRYPOINT/HEALTHCHECK with this config's SHELL.
    pub fn argv(&self, c: &Command) -> Vec<String> {
        c.argv(&self.shell())
    }

    /// Docker's `Healthcheck` object.
    pub fn set_health(&mut self, h: &Health) {
        let v = match h {
            Health::None => json!({"Test": ["NONE"]}),
            Health::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test: Vec<String> = match test {
                    Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                    Command::Exec(v) => std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect(),
                };
                let mut m = Map::new();
                m.insert("Test".into(), json!(test));
                for (k, n) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                    ("Retries", retries),
                ] {
                    if *n != 0 {
                        m.insert(k.into(), json!(n));
                    }
                }
                Value::Object(m)
            }
        };
        self.set("Healthcheck", v);
    }

    /// The config's layer diff IDs.
    pub fn diff_ids(&self) -> Vec<String> {
        self.0
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a step: its history entry, the new layer's diff ID (None
    /// for a config-only step), the creation time.
    pub fn record(&mut self, created_by: &str, diff_id: Option<&str>, now_nanos: i64) {
        let created = rfc3339(now_nanos);
        let top = self.top();
        top.insert("created".into(), json!(created));
        let rootfs = top
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        if let Some(d) = diff_id {
            match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
                Some(a) => a.push(json!(d)),
                None => rootfs["diff_ids"] = json!([d]),
            }
        }
        let mut h = json!({"created": created, "created_by": created_by});
        if diff_id.is_none() {
            h["empty_layer"] = json!(true);
        }
        match top.get_mut("history").and_then(Value::as_array_mut) {
            Some(a) => a.push(h),
            None => {
                top.insert("history".into(), json!([h]));
            }
        }
    }
}

/// RFC 3339 in UTC with nanoseconds, as Go prints times in image configs.
pub fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_change_the_config() {
        let mut c = ImageConfig::parse(
            br#"{"config":{"Env":["PATH=/bin","A=1"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"base"}],"custom":1}"#,
        )
        .unwrap();
        c.set_env("A", "2");
        c.set_env("B", "x y");
        assert_eq!(
            c.env(),
            vec![
                ("PATH".into(), "/bin".into()),
                ("A".into(), "2".into()),
                ("B".into(), "x y".into())
            ]
        );
        assert!(c.has_cmd());
        assert_eq!(c.shell(), vec!["/bin/sh", "-c"]);
        c.set_strings("Shell", vec!["/bin/ash".into(), "-c".into()]);
        assert_eq!(
            c.argv(&Command::Shell("echo".into())),
            vec!["/bin/ash", "-c", "echo"]
        );
        c.merge_map("Labels", vec![("a".into(), json!("b"))]);
        c.merge_map("Labels", vec![("c".into(), json!("d"))]);
        assert_eq!(c.0["config"]["Labels"], json!({"a": "b", "c": "d"}));
        c.set_health(&Health::Check {
            test: Command::Shell("true".into()),
            interval: 5,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 2,
        });
        assert_eq!(
            c.0["config"]["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5, "Retries": 2})
        );
        c.record("ENV A=2", None, 0);
        c.record("RUN x", Some("sha256:bb"), 1_700_000_000_123_456_789);
        assert_eq!(c.diff_ids(), vec!["sha256:aa", "sha256:bb"]);
        let h = c.0["history"].as_array().unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[1]["empty_layer"], json!(true));
        assert!(h[2].get("empty_layer").is_none());
        assert_eq!(c.0["created"], json!("2023-11-14T22:13:20.123456789Z"));
        assert_eq!(c.0["custom"], json!(1), "unknown fields are kept");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        let s = ImageConfig::scratch();
        assert!(s.diff_ids().is_empty() && s.env().is_empty());
        assert!(ImageConfig::parse(b"[]").is_err());
    }
}
