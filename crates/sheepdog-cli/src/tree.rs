//! `sheepdog tree`: a process and everything below it, as an indented tree or as JSON.

use std::io::Write;
use std::process::ExitCode;

use sheepdog::{ProcessInfo, ProcessRef};

use crate::report::json_string;

/// Exit status when the process is not there (or cannot be read).
const EXIT_NOT_FOUND: u8 = 1;

/// Prints the tree below `pid` (default: the process that started sheepdog, so a shell's
/// `sheepdog tree` shows the shell's own tree).
pub fn tree(pid: Option<u32>, json: bool) -> ExitCode {
    let pid = pid.unwrap_or_else(std::os::unix::process::parent_id);
    let tree = ProcessRef::of(pid).and_then(|root| sheepdog::tree(&root));
    let infos = match tree {
        Ok(infos) => infos,
        Err(err) => {
            say!("sheepdog tree: {err}");
            return ExitCode::from(EXIT_NOT_FOUND);
        }
    };
    let text = if json {
        let mut out = String::new();
        write_json(&infos, 0, &mut out);
        out.push('\n');
        out
    } else {
        infos.iter().map(line).collect()
    };
    // A closed stdout (`| head`) ends the listing quietly.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// `PID  command`, indented by depth.
fn line(info: &ProcessInfo) -> String {
    format!(
        "{:indent$}{}  {}\n",
        "",
        info.pid,
        command(info),
        indent = 2 * info.depth
    )
}

fn command(info: &ProcessInfo) -> String {
    info.command
        .iter()
        .map(|arg| arg.to_string_lossy().escape_debug().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `infos[at]` and its subtree (the entries that follow it at a greater depth, breadth
/// first) to `out` as a nested object.
fn write_json(infos: &[ProcessInfo], at: usize, out: &mut String) {
    let info = &infos[at];
    out.push_str(&format!(
        "{{\"pid\":{},\"ppid\":{},\"pgid\":{},\"sid\":{},\"state\":{},\"start_ticks\":{},\"command\":[{}],\"children\":[",
        info.pid,
        info.ppid,
        info.pgid,
        info.sid,
        json_string(&info.state.to_string()),
        info.start_ticks,
        info.command
            .iter()
            .map(|arg| json_string(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(","),
    ));
    let children: Vec<usize> = (0..infos.len())
        .filter(|&i| infos[i].ppid == info.pid && infos[i].depth == info.depth + 1)
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_json(infos, child, out);
    }
    out.push_str("]}");
}
