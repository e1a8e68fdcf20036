//! The few lines `sheepdog run` prints when CMD is done (or one JSON object with `--json`).

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use sheepdog::{Containment, ExitStatus, HerdUsage};

pub struct Report<'a> {
    pub command: &'a [OsString],
    pub status: &'a ExitStatus,
    pub timed_out: bool,
    pub wall: Duration,
    /// Processes still in the tree when the command's own process ended (then stopped).
    pub left_running: usize,
    /// Those of them still there after the stop (it failed).
    pub not_stopped: &'a [u32],
    pub containment: &'a Containment,
    /// What the whole tree used, where the herd could say.
    pub tree: Option<HerdUsage>,
}

impl Report<'_> {
    /// CPU time (user, system) of the whole tree where the herd keeps count; else the
    /// command's own (and that of the children it waited for).
    fn cpu(&self) -> (Duration, Duration) {
        let tree = self
            .tree
            .and_then(|t| Some((t.user_time()?, t.system_time()?)));
        let own = self.status.usage();
        tree.unwrap_or((own.user_time(), own.system_time()))
    }

    /// Peak memory: the whole tree's where the memory controller counts it, else the
    /// command's own where it can be told from sheepdog's, else unknown.
    fn peak_memory(&self) -> Option<u64> {
        self.tree
            .and_then(|t| t.memory_peak_bytes())
            .or(self.status.usage().max_rss_bytes())
    }

    /// The figures the report cannot give, with why.
    fn unknown(&self) -> Vec<(&'static str, String)> {
        let mut unknown: Vec<(&'static str, String)> = match &self.tree {
            Some(tree) => tree
                .unknown()
                .into_iter()
                .filter(|(figure, _)| *figure != "peak memory" && *figure != "CPU time")
                .map(|(figure, why)| (figure, why.to_owned()))
                .collect(),
            None => vec![(
                "peak process count",
                "the herd could not be read".to_owned(),
            )],
        };
        if self.peak_memory().is_none() {
            let tree = self.tree.map_or("the herd could not be read", |t| {
                t.unknown()
                    .into_iter()
                    .find(|(figure, _)| *figure == "peak memory")
                    .map_or("", |(_, why)| why)
            });
            unknown.push((
                "peak memory",
                format!(
                    "the command's own is not above sheepdog's, which the kernel counts in it \
                     (sheepdog shares it until exec); the tree's: {tree}"
                ),
            ));
        }
        unknown
    }

    fn ended(&self) -> String {
        let how = match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by {signal}"),
            (None, None) => "ended".to_owned(),
        };
        if self.timed_out {
            format!("timed out and {how}")
        } else {
            how
        }
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let (user, system) = self.cpu();
        let unknown: Vec<String> = self
            .unknown()
            .iter()
            .map(|(figure, why)| {
                format!(
                    "{{\"figure\":{},\"why\":{}}}",
                    json_string(figure),
                    json_string(why)
                )
            })
            .collect();
        let command: Vec<String> = self
            .command
            .iter()
            .map(|arg| json_string(&arg.to_string_lossy()))
            .collect();
        let outcome = if self.timed_out {
            "timed_out"
        } else if self.status.code().is_some() {
            "exited"
        } else {
            "killed"
        };
        format!(
            "{{\"command\":[{}],\"outcome\":\"{outcome}\",\"code\":{},\"signal\":{},\
             \"timed_out\":{},\"wall_ms\":{:.3},\"user_ms\":{:.3},\"system_ms\":{:.3},\
             \"max_rss_bytes\":{},\"tasks_peak\":{},\"left_running\":{},\"stopped\":{},\
             \"not_stopped\":{},\"containment\":{},\"fallback_reason\":{},\"unknown\":[{}]}}",
            command.join(","),
            self.status
                .code()
                .map_or("null".to_owned(), |c| c.to_string()),
            self.status
                .signal()
                .map_or("null".to_owned(), |s| json_string(&s.to_string())),
            self.timed_out,
            millis(self.wall),
            millis(user),
            millis(system),
            self.peak_memory()
                .map_or("null".to_owned(), |bytes| bytes.to_string()),
            self.tree
                .and_then(|t| t.tasks_peak())
                .map_or("null".to_owned(), |peak| peak.to_string()),
            self.left_running,
            self.stopped(),
            self.not_stopped.len(),
            json_string(&self.containment.mechanism().to_string()),
            self.containment
                .fallback_reason()
                .map_or("null".to_owned(), json_string),
            unknown.join(","),
        )
    }

    /// How many of the processes left running were stopped.
    fn stopped(&self) -> usize {
        self.left_running.saturating_sub(self.not_stopped.len())
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (user, system) = self.cpu();
        let program = self
            .command
            .first()
            .map_or("CMD".into(), |p| p.to_string_lossy());
        writeln!(
            f,
            "sheepdog: `{program}` {} after {:.2}s (cpu {:.2}s user, {:.2}s system; peak memory {})",
            self.ended(),
            self.wall.as_secs_f64(),
            user.as_secs_f64(),
            system.as_secs_f64(),
            self.peak_memory().map_or(
                "unknown (shared with sheepdog's until exec)".to_owned(),
                |bytes| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
            ),
        )?;
        if self.left_running == 0 {
            return write!(f, "sheepdog: nothing of its tree was left running");
        }
        write!(
            f,
            "sheepdog: {} process(es) of its tree were still running when it ended: stopped {}",
            self.left_running,
            self.stopped(),
        )?;
        if !self.not_stopped.is_empty() {
            let pids: Vec<String> = self.not_stopped.iter().map(u32::to_string).collect();
            write!(
                f,
                ", {} could not be stopped: pid(s) {}",
                self.not_stopped.len(),
                pids.join(" ")
            )?;
        }
        Ok(())
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The one JSON object of a run that did not get as far as a status: `outcome` says how far
/// (`not_found`, `not_executable`, `not_started`, `no_herd`, `lost`), `error` why.
pub fn failure_json(command: &[OsString], outcome: &str, error: &str) -> String {
    let command: Vec<String> = command
        .iter()
        .map(|arg| json_string(&arg.to_string_lossy()))
        .collect();
    format!(
        "{{\"command\":[{}],\"outcome\":{},\"code\":null,\"signal\":null,\"error\":{}}}",
        command.join(","),
        json_string(outcome),
        json_string(error)
    )
}

pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            "\"a\\\"b\\\\c\\nd\\u0001\""
        );
    }
}
