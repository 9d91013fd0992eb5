//! Network config files: `.conflist` lists and single-plugin `.conf`/`.json`
//! files (turned into one-plugin lists, as libcni does), and the choice of the
//! node's default network: the first valid file in lexical order.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tracing::warn;

use super::error::CniError;

/// The CNI versions berth can speak to plugins (results of 0.3.0 and later
/// have the same `ips` shape; 0.1/0.2 results do not).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Where named networks (Docker's user networks) keep their configs, below `root`.
pub const NAMED_DIR: &str = "networks";

/// File name endings read from the config directory.
const EXTENSIONS: &[&str] = &["conf", "conflist", "json"];

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network's name (safe to use in file names).
    pub name: String,
    /// The `cniVersion` every plugin of the chain is given.
    pub cni_version: String,
    /// `disableCheck`: CHECK is a no-op for this network.
    pub disable_check: bool,
    /// The plugin configs, in chain order; each has a string `type`.
    pub plugins: Vec<Value>,
    /// The whole list as a JSON object (a `.conf` file already converted).
    pub raw: Value,
    /// Where it was read from (empty when built in memory).
    pub path: PathBuf,
}

impl NetworkConfigList {
    /// When its file was last written (None when built in memory): Docker's
    /// `Created` of the default network.
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    /// Parses a config file's bytes; `path`'s extension picks the form
    /// (`.conflist` is a list, `.conf`/`.json` a single plugin).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let is_list = path.extension().is_some_and(|e| e == "conflist")
            || (value.get("plugins").is_some() && value.get("type").is_none());
        let raw = if is_list {
            value
        } else {
            json!({
                "name": value.get("name").cloned().unwrap_or(Value::Null),
                "cniVersion": value.get("cniVersion").cloned().unwrap_or(Value::Null),
                "plugins": [value],
            })
        };
        Self::from_value(raw, path)
    }

    /// Validates a list given as a JSON object.
    pub fn from_value(raw: Value, path: &Path) -> Result<Self, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let obj = raw
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".into()))?;
        let name = match obj.get("name") {
            Some(Value::String(s)) if valid_name(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(invalid(format!(
                    "network name {s:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
                )))
            }
            _ => return Err(invalid("missing network name".into())),
        };
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => v.clone(),
            Some(Value::String(v)) => {
                return Err(invalid(format!(
                    "cniVersion {v:?} is not supported (berth speaks {})",
                    SUPPORTED_VERSIONS.join(", ")
                )))
            }
            _ => return Err(invalid("missing cniVersion".into())),
        };
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            // libcni also accepts the string forms.
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(other) => return Err(invalid(format!("disableCheck {other} is not a bool"))),
        };
        let plugins = match obj.get("plugins") {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            Some(Value::Array(_)) => return Err(invalid("plugins is empty".into())),
            _ => return Err(invalid("missing plugins".into())),
        };
        for (i, p) in plugins.iter().enumerate() {
            match p.get("type") {
                Some(Value::String(t)) if valid_type(t) => {}
                Some(Value::String(t)) => {
                    return Err(invalid(format!("plugin {i} has a bad type {t:?}")))
                }
                _ => return Err(invalid(format!("plugin {i} has no type"))),
            }
        }
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            raw,
            path: path.to_path_buf(),
        })
    }

    /// Reads and validates one file (plugins are not looked up).
    pub fn from_file(path: &Path) -> Result<Self, CniError> {
        let bytes = std::fs::read(path).map_err(|source| CniError::Io {
            op: "read network config",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// The plugin `type`s, in chain order.
    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or_default())
    }
}

/// The network name rule of the CNI spec; it also keeps cache file names safe.
pub(crate) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A plugin type names a file inside a plugin directory, nothing else.
fn valid_type(t: &str) -> bool {
    !t.is_empty() && !t.contains('/') && t != "." && t != ".."
}

/// Finds plugin `plugin` as an executable file in the first of `bin_dirs` that has it.
pub fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    if valid_type(plugin) {
        for dir in bin_dirs {
            let path = dir.join(plugin);
            if std::fs::metadata(&path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Ok(path);
            }
        }
    }
    Err(CniError::PluginNotFound {
        plugin: plugin.to_string(),
        dirs: bin_dirs.to_vec(),
    })
}

/// What a scan of the config directory found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The default network, if any file is valid.
    pub chosen: Option<NetworkConfigList>,
    /// Why each earlier file was passed over (one line per file).
    pub skipped: Vec<String>,
}

impl Scan {
    /// Why there is no default network, for the runtime's Status.
    pub fn reason(&self, conf_dir: &Path) -> String {
        if self.skipped.is_empty() {
            format!("no cni network config found in {}", conf_dir.display())
        } else {
            format!(
                "no valid cni network config in {}: {}",
                conf_dir.display(),
                self.skipped.join("; ")
            )
        }
    }
}

/// Reads `conf_dir` and picks the first valid file in lexical order; a valid
/// file also has every plugin binary present in `bin_dirs`.
pub(crate) fn scan(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<Scan, CniError> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(source) => {
            return Err(CniError::Io {
                op: "read cni config directory",
                path: conf_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
        })
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    let mut scan = Scan::default();
    for file in files {
        let checked = NetworkConfigList::from_file(&file).and_then(|list| {
            for t in list.plugin_types() {
                find_plugin(t, bin_dirs)?;
            }
            Ok(list)
        });
        match checked {
            Ok(list) => {
                scan.chosen = Some(list);
                break;
            }
            Err(CniError::InvalidConfig { reason, .. }) => {
                scan.skipped.push(format!("{}: {reason}", file.display()))
            }
            Err(e) => scan.skipped.push(format!("{}: {e}", file.display())),
        }
    }
    Ok(scan)
}

/// berth's own network (`config/cni/10-berth.conflist`), the node's default
/// while the config directory holds no config file at all.
const BUILTIN_CONFLIST: &str = include_str!("../../config/cni/10-berth.conflist");

/// What the built-in network's `path` says, in logs and Status messages.
pub const BUILTIN_PATH: &str = "<built-in>/10-berth.conflist";

/// The built-in network, parsed and validated like any file.
pub fn builtin() -> Result<NetworkConfigList, CniError> {
    NetworkConfigList::from_bytes(BUILTIN_CONFLIST.as_bytes(), Path::new(BUILTIN_PATH))
}

impl Scan {
    /// Falls back to the built-in network when the directory had no config
    /// file at all (a directory with only broken files stays not ready, so a
    /// typo never silently moves pods to another network).
    pub fn or_builtin(mut self, bin_dirs: &[PathBuf]) -> Self {
        if self.chosen.is_some() || !self.skipped.is_empty() {
            return self;
        }
        let checked = builtin().and_then(|list| {
            for t in list.plugin_types() {
                find_plugin(t, bin_dirs)?;
            }
            Ok(list)
        });
        match checked {
            Ok(list) => self.chosen = Some(list),
            Err(e) => self
                .skipped
                .push(format!("{BUILTIN_PATH} (the built-in network): {e}")),
        }
        self
    }
}

/// The default network of `conf_dir`: the first valid file in lexical order.
/// Invalid files are skipped with a warning; `None` when no file is valid.
pub fn load_default(
    conf_dir: &Path,
    bin_dirs: &[PathBuf],
) -> Result<Option<NetworkConfigList>, CniError> {
    load_default_or_builtin(conf_dir, bin_dirs, false)
}

/// [`load_default`], with the built-in network when `builtin` is set and the
/// directory has no config file.
pub fn load_default_or_builtin(
    conf_dir: &Path,
    bin_dirs: &[PathBuf],
    builtin: bool,
) -> Result<Option<NetworkConfigList>, CniError> {
    let mut scan = scan(conf_dir, bin_dirs)?;
    if builtin {
        scan = scan.or_builtin(bin_dirs);
    }
    for why in &scan.skipped {
        warn!("skipping cni network config {why}");
    }
    Ok(scan.chosen)
}

/// Network `name` from `<dir>/<name>.conflist`, parsed as any config file and
/// with every plugin binary present in `bin_dirs`: a network a pod names
/// (Docker's user networks) instead of the node's default. `Ok(None)` when
/// there is no such file.
pub fn load_named(
    dir: &Path,
    name: &str,
    bin_dirs: &[PathBuf],
) -> Result<Option<NetworkConfigList>, CniError> {
    if !valid_name(name) {
        return Err(CniError::InvalidArgument {
            what: "network name",
            reason: format!("{name:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
        });
    }
    let path = dir.join(format!("{name}.conflist"));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniError::Io {
                op: "read network config",
                path,
                source,
            })
        }
    };
    let list = NetworkConfigList::from_bytes(&bytes, &path)?;
    if list.name != name {
        return Err(CniError::InvalidConfig {
            reason: format!("it names network {:?}, not {name:?}", list.name),
            path,
        });
    }
    for t in list.plugin_types() {
        find_plugin(t, bin_dirs)?;
    }
    Ok(Some(list))
}
