//! `sheepdog.toml`: the services `sheepdog up` runs. Every error names the file, the line and
//! the key.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sheepdog::{
    Backoff, Command, Condition, Liveness, Ready, Restart, Service, Signal, StartLimit, StopPlan,
    StopTarget, SuperviseError, Supervisor, SupervisorBuilder,
};
use toml::Spanned;

/// How long a service gets to become ready when `ready.timeout` is not given.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The descriptor `ready = { notify = true }` passes.
const NOTIFY_FD: i32 = 3;

/// A configuration that cannot be used, and where.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    services: BTreeMap<String, ServiceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    command: Option<Spanned<String>>,
    argv: Option<Spanned<Vec<String>>>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    ready: Option<Spanned<ReadyConfig>>,
    liveness: Option<Spanned<LivenessConfig>>,
    #[serde(default)]
    restart: RestartConfig,
    /// Exit codes that count as success for `restart = "on-failure"` (default: 0).
    success_codes: Option<Vec<i32>>,
    backoff: Option<BackoffConfig>,
    start_limit: Option<StartLimitConfig>,
    stop: Option<StopConfig>,
    depends_on: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyConfig {
    line: Option<String>,
    tcp: Option<Spanned<String>>,
    file: Option<PathBuf>,
    command: Option<String>,
    notify: Option<bool>,
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LivenessConfig {
    tcp: Option<Spanned<String>>,
    file: Option<PathBuf>,
    command: Option<String>,
    interval: Option<Dur>,
    misses: Option<u32>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RestartConfig {
    #[default]
    No,
    OnFailure,
    Always,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffConfig {
    initial: Option<Dur>,
    factor: Option<f64>,
    max: Option<Dur>,
    jitter: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartLimitConfig {
    burst: u32,
    interval: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopConfig {
    signal: Option<Sig>,
    grace: Option<Dur>,
}

/// A duration written as in `sheepdog run --timeout`: "500ms", "2s", "1m30s".
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A signal by name or number: "TERM", "SIGINT", "9".
struct Sig(Signal);

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sig, D::Error> {
        let text = String::deserialize(d)?;
        crate::parse_signal(&text)
            .map(Sig)
            .map_err(serde::de::Error::custom)
    }
}

/// A configuration read and checked: the supervisor to start.
pub struct Config {
    pub builder: SupervisorBuilder,
    pub names: Vec<String>,
    /// Per service, the exit codes that count as a clean end.
    pub success_codes: BTreeMap<String, Vec<i32>>,
}

/// Reads and checks the file at `path`; commands' relative paths are taken from its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        file: path.to_owned(),
        line: None,
        key: None,
        message: format!("cannot read it: {err}"),
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source { path, text };
    let file: FileConfig = toml::from_str(text).map_err(|err| source.toml_error(&err))?;
    if file.services.is_empty() {
        return Err(source.error(
            None,
            "services".into(),
            "no service is defined; add a [services.NAME] table".into(),
        ));
    }
    let base = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = Supervisor::builder();
    let mut services = Vec::new();
    let mut depends_spans = BTreeMap::new();
    let mut success_codes = BTreeMap::new();
    for (name, svc) in file.services {
        let codes = svc.success_codes.clone().unwrap_or_else(|| vec![0]);
        builder = builder.service(service(&source, &name, &svc, &codes, base)?);
        if let Some(deps) = &svc.depends_on {
            depends_spans.insert(name.clone(), deps.span());
        }
        success_codes.insert(name.clone(), codes);
        services.push(name);
    }
    builder
        .check()
        .map_err(|err| source.dependency_error(&err, &depends_spans))?;
    Ok(Config {
        builder,
        names: services,
        success_codes,
    })
}

/// The file being read, to point errors at.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, line: Option<usize>, key: String, message: String) -> ConfigError {
        ConfigError {
            file: self.path.to_owned(),
            line,
            key: Some(key),
            message,
        }
    }

    /// An error about `key`, at the line where `span` starts.
    fn at(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        self.error(Some(line_of(self.text, span.start)), key, message)
    }

    /// A file toml cannot read, or whose keys or types are not a configuration's.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let (line, key) = match err.span() {
            Some(span) => (
                Some(line_of(self.text, span.start)),
                key_at(self.text, span.start),
            ),
            None => (None, None),
        };
        ConfigError {
            file: self.path.to_owned(),
            line,
            key,
            message: err.message().to_owned(),
        }
    }

    /// A dependency on no service, or a cycle: at the `depends_on` of the service it names.
    fn dependency_error(
        &self,
        err: &SuperviseError,
        depends_spans: &BTreeMap<String, Range<usize>>,
    ) -> ConfigError {
        let (service, key) = match err {
            SuperviseError::UnknownDependency {
                service,
                dependency,
            } => (
                service.clone(),
                format!("services.{service}.depends_on.{dependency}"),
            ),
            SuperviseError::Cycle(names) => {
                let first = names.first().cloned().unwrap_or_default();
                (first.clone(), format!("services.{first}.depends_on"))
            }
            other => (String::new(), other.to_string()),
        };
        let line = depends_spans
            .get(&service)
            .map(|span| line_of(self.text, span.start));
        self.error(line, key, err.to_string())
    }
}

/// The service a `[services.NAME]` table describes; `codes` are its exit codes that count as
/// success.
fn service(
    source: &Source,
    name: &str,
    svc: &ServiceConfig,
    codes: &[i32],
    base: &Path,
) -> Result<Service, ConfigError> {
    let key = |k: &str| format!("services.{name}.{k}");
    let mut command = command(source, name, svc)?;
    command.current_dir(base.join(svc.cwd.as_deref().unwrap_or(Path::new(""))));
    command.envs(&svc.env);
    let mut service = Service::new(name.to_owned(), command).restart(match svc.restart {
        RestartConfig::No => Restart::Never,
        RestartConfig::OnFailure => Restart::OnFailure {
            success: codes.to_vec(),
        },
        RestartConfig::Always => Restart::Always,
    });
    if let Some(ready) = &svc.ready {
        let (probe, timeout) = ready_probe(ready, base)
            .map_err(|(span, k, message)| source.at(span, key(&dotted("ready", k)), message))?;
        service = service.ready(probe, timeout);
    }
    if let Some(live) = &svc.liveness {
        let live = liveness(live, base)
            .map_err(|(span, k, message)| source.at(span, key(&dotted("liveness", k)), message))?;
        service = service.liveness(live);
    }
    if let Some(b) = &svc.backoff {
        let initial = b
            .initial
            .as_ref()
            .map_or(Duration::from_millis(100), |d| d.0);
        let max = b.max.as_ref().map_or(Duration::from_secs(30), |d| d.0);
        service = service.backoff(
            Backoff::new(initial, b.factor.unwrap_or(2.0), max).jitter(b.jitter.unwrap_or(0.1)),
        );
    }
    if let Some(limit) = &svc.start_limit {
        service = service.start_limit(StartLimit::new(limit.burst, limit.interval.0));
    }
    if let Some(stop) = &svc.stop {
        let signal = stop.signal.as_ref().map_or(Signal::TERM, |s| s.0);
        let grace = stop.grace.as_ref().map_or(Duration::from_secs(5), |d| d.0);
        service = service.stop(StopPlan::new().then(signal, StopTarget::Tree, grace));
    }
    if let Some(deps) = &svc.depends_on {
        for (dep, condition) in dependencies(deps)
            .map_err(|(span, message)| source.at(span, key("depends_on"), message))?
        {
            service = service.depends_on(dep, condition);
        }
    }
    Ok(service)
}

/// A service's command: `command`, run by `sh -c`, or `argv`.
fn command(source: &Source, name: &str, svc: &ServiceConfig) -> Result<Command, ConfigError> {
    let key = |k: &str| format!("services.{name}.{k}");
    match (&svc.command, &svc.argv) {
        (Some(line), None) => {
            let mut command = Command::new("sh");
            command.args(["-c", line.get_ref()]);
            Ok(command)
        }
        (None, Some(argv)) => match argv.get_ref().split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args);
                Ok(command)
            }
            None => Err(source.at(argv.span(), key("argv"), "is empty".into())),
        },
        (Some(line), Some(_)) => Err(source.at(
            line.span(),
            key("command"),
            "give either `command` or `argv`, not both".into(),
        )),
        (None, None) => Err(source.error(
            header_line(source.text, name),
            format!("services.{name}"),
            "needs `command` (run by `sh -c`) or `argv`".into(),
        )),
    }
}

/// The probe of a `ready` table; an error carries the span and key within `ready`.
fn ready_probe(
    ready: &Spanned<ReadyConfig>,
    base: &Path,
) -> Result<(Ready, Duration), (Range<usize>, &'static str, String)> {
    let r = ready.get_ref();
    let timeout = r.timeout.as_ref().map_or(READY_TIMEOUT, |d| d.0);
    let mut probes = Vec::new();
    if let Some(line) = &r.line {
        probes.push(Ready::line(line.clone()));
    }
    if let Some(addr) = &r.tcp {
        probes.push(Ready::tcp(address(addr)?));
    }
    if let Some(file) = &r.file {
        probes.push(Ready::file(base.join(file)));
    }
    if let Some(line) = &r.command {
        probes.push(Ready::command(probe_command(line, base)));
    }
    if r.notify == Some(true) {
        probes.push(Ready::notify(NOTIFY_FD));
    }
    if probes.len() != 1 {
        return Err((
            ready.span(),
            "",
            "give exactly one of `line`, `tcp`, `file`, `command`, `notify = true`".into(),
        ));
    }
    Ok((probes.remove(0), timeout))
}

/// The probe of a `liveness` table; an error carries the span and key within `liveness`.
fn liveness(
    live: &Spanned<LivenessConfig>,
    base: &Path,
) -> Result<Liveness, (Range<usize>, &'static str, String)> {
    let l = live.get_ref();
    let mut probes = Vec::new();
    if let Some(addr) = &l.tcp {
        probes.push(Liveness::tcp(address(addr)?));
    }
    if let Some(file) = &l.file {
        probes.push(Liveness::file(base.join(file)));
    }
    if let Some(line) = &l.command {
        probes.push(Liveness::command(probe_command(line, base)));
    }
    if probes.len() != 1 {
        return Err((
            live.span(),
            "",
            "give exactly one of `tcp`, `file`, `command`".into(),
        ));
    }
    let mut probe = probes.remove(0);
    if let Some(every) = &l.interval {
        probe = probe.every(every.0);
    }
    if let Some(misses) = l.misses {
        probe = probe.misses(misses);
    }
    Ok(probe)
}

/// A probe's TCP address.
fn address(
    addr: &Spanned<String>,
) -> Result<std::net::SocketAddr, (Range<usize>, &'static str, String)> {
    addr.get_ref().parse().map_err(|err| {
        (
            addr.span(),
            "tcp",
            format!(
                "`{}` is not an address like 127.0.0.1:8080 or [::1]:8080: {err}",
                addr.get_ref()
            ),
        )
    })
}

/// A probe's command: `sh -c LINE` in the file's directory, its output discarded.
fn probe_command(line: &str, base: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", line])
        .current_dir(base)
        .stdin(sheepdog::Stdio::null())
        .stdout(sheepdog::Stdio::null())
        .stderr(sheepdog::Stdio::null());
    command
}

/// A message about the part of the file at a span.
type Located = (Range<usize>, String);

/// `depends_on`: a list of names (each "started"), or a table of name -> condition.
fn dependencies(deps: &Spanned<toml::Value>) -> Result<Vec<(String, Condition)>, Located> {
    let bad = |message: String| (deps.span(), message);
    match deps.get_ref() {
        toml::Value::Array(names) => names
            .iter()
            .map(|name| match name {
                toml::Value::String(name) => Ok((name.clone(), Condition::Started)),
                other => Err(bad(format!(
                    "a list of service names holds {}, not a name",
                    other.type_str()
                ))),
            })
            .collect(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(name, condition)| match condition.as_str() {
                Some("started") => Ok((name.clone(), Condition::Started)),
                Some("ready") => Ok((name.clone(), Condition::Ready)),
                Some("completed") => Ok((name.clone(), Condition::Completed)),
                _ => Err(bad(format!(
                    "`{name} = {condition}`: the condition is one of \"started\", \"ready\", \
                     \"completed\""
                ))),
            })
            .collect(),
        other => Err(bad(format!(
            "is a list of names or a table of name = \"started\" | \"ready\" | \"completed\", \
             not {}",
            other.type_str()
        ))),
    }
}

/// `table.key`, or `table` for an error about the whole table (`key` empty).
fn dotted(table: &str, key: &str) -> String {
    if key.is_empty() {
        table.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `[services.NAME]`, if it is written that way.
fn header_line(text: &str, name: &str) -> Option<usize> {
    let header = format!("[services.{name}]");
    text.lines()
        .position(|line| line.trim() == header)
        .map(|i| i + 1)
}

/// The dotted key a toml error at `offset` is about: the table header above it, the key that
/// starts its line, and the inner key of an inline table it points into.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let mut path: Vec<String> = Vec::new();
    // The nearest table header above (or at) the error.
    if let Some(header) = text[..line_end].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(|c| c == '[' || c == ']'))
    }) {
        path.push(header.trim().to_owned());
    }
    let is_header = line.trim_start().starts_with('[');
    if !is_header {
        if let Some((first, _)) = line.split_once('=') {
            path.push(first.trim().to_owned());
        }
        let column = offset - line_start;
        let before = &line[..column];
        let after = &line[column..];
        // Pointing at a key (an unknown field): the identifier that starts here.
        let at_key: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let first_eq = line.find('=');
        let inner = if !at_key.is_empty()
            && after[at_key.len()..].trim_start().starts_with('=')
            && first_eq.is_some_and(|eq| eq < column)
        {
            Some(at_key)
        } else if let Some(eq) = before.rfind('=').filter(|&eq| Some(eq) != first_eq) {
            // Pointing at a value inside an inline table: the key before its `=`.
            let key_part = &before[..eq];
            let start = key_part.rfind(['{', ',']).map_or(0, |i| i + 1);
            Some(key_part[start..].trim().to_owned())
        } else {
            None
        };
        if let Some(inner) = inner.filter(|k| !k.is_empty()) {
            path.push(inner);
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match parse(Path::new("dir/sheepdog.toml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn the_schema_of_the_issue_is_accepted() {
        let text = r#"
[services.db]
command = "postgres -D data"
cwd = "db"
env = { PGPORT = "5433" }
ready = { line = "accepting connections" }
restart = "on-failure"
backoff = { initial = "100ms", factor = 2.0, max = "30s", jitter = 0.1 }
start_limit = { burst = 5, interval = "10s" }
stop = { signal = "TERM", grace = "5s" }

[services.api]
argv = ["./api"]
depends_on = { db = "ready" }

[services.web]
argv = ["./web"]
depends_on = ["api"]
ready = { tcp = "127.0.0.1:80", timeout = "5s" }
liveness = { command = "curl -fs http://127.0.0.1/health", interval = "10s", misses = 3 }
"#;
        let config = parse(Path::new("sheepdog.toml"), text).unwrap();
        assert_eq!(config.names, ["api", "db", "web"]);
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let text = "[services.db]\ncommand = \"true\"\ncolour = \"red\"\n";
        let err = error(text);
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.db.colour`: unknown field `colour`"),
            "{err}"
        );
        let text = "[services.db]\ncommand = \"true\"\nready = { tpc = \"x\" }\n";
        let err = error(text);
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.db.ready.tpc`: unknown field `tpc`"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_file_line_and_key() {
        let err = error("[services.db]\n\ncommand = 5\n");
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.db.command`: invalid type"),
            "{err}"
        );
        let err = error("[services.db]\ncommand = \"x\"\nbackoff = { initial = \"soon\" }\n");
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.db.backoff.initial`:"),
            "{err}"
        );
        let err = error("[services.db]\ncommand = \"x\"\nrestart = \"sometimes\"\n");
        assert!(
            err.starts_with(
                "dir/sheepdog.toml:3: `services.db.restart`: unknown variant `sometimes`"
            ),
            "{err}"
        );
    }

    #[test]
    fn cycles_and_missing_dependencies_name_the_line() {
        let text = "[services.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n[services.b]\ncommand = \"x\"\ndepends_on = { a = \"ready\" }\n";
        let err = error(text);
        assert_eq!(
            err,
            "dir/sheepdog.toml:3: `services.a.depends_on`: dependency cycle: a -> b -> a"
        );
        let err = error("[services.a]\ncommand = \"x\"\n\ndepends_on = [\"nope\"]\n");
        assert_eq!(
            err,
            "dir/sheepdog.toml:4: `services.a.depends_on.nope`: service `a` depends on `nope`, \
             which is not a service"
        );
    }

    #[test]
    fn a_service_needs_exactly_one_way_to_run_and_one_probe() {
        let err = error("[services.a]\ncwd = \"x\"\n");
        assert_eq!(
            err,
            "dir/sheepdog.toml:1: `services.a`: needs `command` (run by `sh -c`) or `argv`"
        );
        let err =
            error("[services.a]\ncommand = \"x\"\nready = { line = \"a\", tcp = \"1.2.3.4:5\" }\n");
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.a.ready"),
            "{err}"
        );
        let err = error("[services.a]\ncommand = \"x\"\nliveness = { interval = \"1s\" }\n");
        assert_eq!(
            err,
            "dir/sheepdog.toml:3: `services.a.liveness`: give exactly one of `tcp`, `file`, \
             `command`"
        );
        let err = error("[services.a]\ncommand = \"x\"\nready = { tcp = \"localhost\" }\n");
        assert!(
            err.starts_with("dir/sheepdog.toml:3: `services.a.ready.tcp`"),
            "{err}"
        );
    }
}
