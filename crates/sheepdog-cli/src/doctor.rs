//! `sheepdog doctor`: what containment this host gives, and why.

use std::path::Path;
use std::process::ExitCode;

use sheepdog::{Command, Herd, Mechanism};

use crate::report::json_string;

struct Finding {
    name: &'static str,
    value: String,
}

pub async fn doctor(json: bool) -> ExitCode {
    let mut findings = Vec::new();
    let mut add = |name, value: String| findings.push(Finding { name, value });
    let host = sheepdog::host_containment();
    add(
        "predicted",
        host.mechanism()
            .map_or("none".to_owned(), |m| mechanism_name(m).to_owned()),
    );
    add("reason", host.reason().to_owned());
    add("kernel", kernel_release());
    add(
        "cgroup2_mount",
        cgroup2_mount().unwrap_or_else(|| "none".into()),
    );
    // A real herd, then a real spawn into it: what a program here actually gets.
    match Herd::new() {
        Ok(herd) => {
            let containment = herd.containment();
            add(
                "mechanism",
                mechanism_name(containment.mechanism()).to_owned(),
            );
            add(
                "fallback_reason",
                containment.fallback_reason().unwrap_or("-").to_owned(),
            );
            if let Some(cgroup) = containment.cgroup() {
                add("herd_cgroup", cgroup.display().to_string());
                add("cgroup.kill", yes_no(cgroup.join("cgroup.kill").exists()));
                add(
                    "cgroup.freeze",
                    yes_no(cgroup.join("cgroup.freeze").exists()),
                );
            }
            add("cannot_catch", containment.cannot_catch().join("; "));
            match herd.spawn(&Command::new("true")) {
                Ok(mut child) => {
                    let path = child.spawn_path();
                    let _ = child.wait().await;
                    add("spawn_path", format!("{path:?}"));
                    add("clone3", yes_no(path == sheepdog::SpawnPath::Clone3));
                    add(
                        "pidfd",
                        yes_no(path != sheepdog::SpawnPath::CloneWithoutPidfd),
                    );
                    add(
                        "clone_into_cgroup",
                        yes_no(
                            path == sheepdog::SpawnPath::Clone3 && containment.cgroup().is_some(),
                        ),
                    );
                }
                Err(err) => add("spawn", format!("failed: {err}")),
            }
        }
        Err(err) => add("mechanism", format!("none: {err}")),
    }
    add(
        "subreaper",
        "yes (Linux ≥ 3.4): process-group herds adopt orphans with it \
         (not with SHEEPDOG_ADOPT_ORPHANS=0); cgroup herds need none"
            .to_owned(),
    );

    if json {
        let fields: Vec<String> = findings
            .iter()
            .map(|f| format!("{}:{}", json_string(f.name), json_value(&f.value)))
            .collect();
        show!("{{{}}}", fields.join(","));
    } else {
        for f in &findings {
            show!("{:<18} {}", format!("{}:", f.name), f.value);
        }
    }
    ExitCode::SUCCESS
}

pub fn mechanism_name(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::CgroupV2 => "cgroup v2",
        Mechanism::ProcessGroup => "process group",
        _ => "other",
    }
}

fn yes_no(yes: bool) -> String {
    (if yes { "yes" } else { "no" }).to_owned()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|err| format!("unknown ({err})"))
}

fn cgroup2_mount() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2" && Path::new(mount).is_absolute())
            .then(|| mount.to_owned())
    })
}

/// A finding as a typed JSON value: `yes`/`no` as booleans, `-` as null, whole numbers as
/// numbers, the rest as strings.
fn json_value(value: &str) -> String {
    match value {
        "yes" => "true".to_owned(),
        "no" => "false".to_owned(),
        "-" => "null".to_owned(),
        number if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            number.to_owned()
        }
        text => json_string(text),
    }
}
