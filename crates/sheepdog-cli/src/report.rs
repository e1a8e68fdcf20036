//! The few lines `sheepdog run` prints when CMD is done (or one JSON object with `--json`).

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use sheepdog::{Containment, ExitStatus};

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
    /// CPU time (user, system) of the whole tree where the herd keeps count; else the
    /// command's own (and that of the children it waited for).
    pub cpu: (Duration, Duration),
}

impl Report<'_> {
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
        let usage = self.status.usage();
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
             \"max_rss_bytes\":{},\"left_running\":{},\"stopped\":{},\"not_stopped\":{},\
             \"containment\":{},\"fallback_reason\":{}}}",
            command.join(","),
            self.status
                .code()
                .map_or("null".to_owned(), |c| c.to_string()),
            self.status
                .signal()
                .map_or("null".to_owned(), |s| json_string(&s.to_string())),
            self.timed_out,
            millis(self.wall),
            millis(self.cpu.0),
            millis(self.cpu.1),
            usage
                .max_rss_bytes()
                .map_or("null".to_owned(), |bytes| bytes.to_string()),
            self.left_running,
            self.stopped(),
            self.not_stopped.len(),
            json_string(&self.containment.mechanism().to_string()),
            self.containment
                .fallback_reason()
                .map_or("null".to_owned(), json_string),
        )
    }

    /// How many of the processes left running were stopped.
    fn stopped(&self) -> usize {
        self.left_running.saturating_sub(self.not_stopped.len())
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let usage = self.status.usage();
        let program = self
            .command
            .first()
            .map_or("CMD".into(), |p| p.to_string_lossy());
        writeln!(
            f,
            "sheepdog: `{program}` {} after {:.2}s (cpu {:.2}s user, {:.2}s system; peak memory {})",
            self.ended(),
            self.wall.as_secs_f64(),
            self.cpu.0.as_secs_f64(),
            self.cpu.1.as_secs_f64(),
            usage.max_rss_bytes().map_or(
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
