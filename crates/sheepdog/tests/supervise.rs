//! The supervisor with real processes: backoff and the start limit, readiness gating
//! dependants, reverse-order stops, daemonizing children, drops, and restarts that leak nothing.

mod common;

use std::time::{Duration, Instant};

use common::{alive, cmd, poll_until};
use sheepdog::{
    Backoff, Condition, Event, EventKind, Ready, Restart, Service, StartLimit, Supervisor,
};

/// The leak test counts this process's descriptors and cgroups: the other tests hold this
/// shared, the leak test exclusively.
static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn sh(test: &str, script: &str) -> sheepdog::Command {
    let mut command = cmd(test, "sh");
    command.args(["-c", script]);
    command
}

/// Every event until the supervisor is done, bounded.
async fn all_events(sup: &mut Supervisor, limit: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    let run = async {
        while let Some(event) = sup.next().await {
            events.push(event);
        }
    };
    if tokio::time::timeout(limit, run).await.is_err() {
        panic!("the supervisor was not done within {limit:?}");
    }
    events
}

/// Events until one of `service` matches `pred`, bounded; returns them all.
async fn events_until(
    sup: &mut Supervisor,
    service: &str,
    mut pred: impl FnMut(&EventKind) -> bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let run = async {
        while let Some(event) = sup.next().await {
            let hit = &*event.service == service && pred(&event.kind);
            events.push(event);
            if hit {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(true) => events,
        _ => panic!("no such event for {service}; got {events:#?}"),
    }
}

fn times(events: &[Event], service: &str, pred: impl Fn(&EventKind) -> bool) -> Vec<Instant> {
    events
        .iter()
        .filter(|e| &*e.service == service && pred(&e.kind))
        .map(|e| e.at)
        .collect()
}

fn position(events: &[Event], service: &str, pred: impl Fn(&EventKind) -> bool) -> usize {
    events
        .iter()
        .position(|e| &*e.service == service && pred(&e.kind))
        .unwrap_or_else(|| panic!("no such event for {service} in {events:#?}"))
}

/// Kills what a test left running if it failed half-way, by its marker.
struct Reap(&'static str);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in alive(self.0) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
                rustix::process::Signal::KILL,
            );
        }
    }
}

#[tokio::test]
async fn crash_loop_backs_off_by_the_factor_and_gives_up_at_the_start_limit() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_crash_loop";
    let _reap = Reap(test);
    // Delays of 150, 300 and 600 ms: with 150 ms of tolerance each gap can match one only.
    let initial = Duration::from_millis(150);
    let mut sup = Supervisor::builder()
        .service(
            Service::new("crash", sh(test, "exit 3"))
                .restart(Restart::on_failure())
                .backoff(Backoff::new(initial, 2.0, Duration::from_secs(10)))
                .start_limit(StartLimit::new(4, Duration::from_secs(60))),
        )
        .start()
        .unwrap();
    let events = all_events(&mut sup, Duration::from_secs(20)).await;

    let starts = times(&events, "crash", |k| {
        matches!(k, EventKind::Starting { .. })
    });
    let exits = times(
        &events,
        "crash",
        |k| matches!(k, EventKind::Exited { status } if status.code() == Some(3)),
    );
    assert_eq!(starts.len(), 4, "{events:#?}");
    assert_eq!(exits.len(), 4, "{events:#?}");
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Restarting { after } => Some(after),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [initial, initial * 2, initial * 4]);
    // The gap from an exit to the next start is the announced delay, give or take scheduling.
    for (k, delay) in delays.iter().enumerate() {
        let gap = starts[k + 1].duration_since(exits[k]);
        assert!(
            gap >= *delay && gap < *delay + initial,
            "gap {k}: {gap:?} for a delay of {delay:?}"
        );
    }
    let gave_up = events.last().expect("events");
    assert!(
        matches!(&gave_up.kind, EventKind::GaveUp { reason } if reason.contains("start limit")),
        "{gave_up:?}"
    );
}

#[tokio::test]
async fn readiness_gates_dependants_and_stop_goes_in_reverse_order() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_ready_order";
    let _reap = Reap(test);
    let mut sup = Supervisor::builder()
        .service(
            Service::new("api", cmd(test, "sleep").arg("100").clone())
                .depends_on("db", Condition::Ready),
        )
        .service(
            Service::new(
                "db",
                sh(
                    test,
                    "sleep 0.3; echo db is accepting connections; exec sleep 100",
                ),
            )
            .ready(
                Ready::line("accepting connections"),
                Duration::from_secs(10),
            ),
        )
        .service(
            Service::new("web", cmd(test, "sleep").arg("100").clone())
                .depends_on("api", Condition::Started),
        )
        .start()
        .unwrap();
    let mut events =
        events_until(&mut sup, "web", |k| matches!(k, EventKind::Starting { .. })).await;
    let db_start = times(&events, "db", |k| matches!(k, EventKind::Starting { .. }))[0];
    let db_ready = times(&events, "db", |k| matches!(k, EventKind::Ready))[0];
    let api_start = times(&events, "api", |k| matches!(k, EventKind::Starting { .. }))[0];
    assert!(db_ready.duration_since(db_start) >= Duration::from_millis(300));
    assert!(api_start >= db_ready, "api started before db was ready");
    assert!(
        position(
            &events,
            "db",
            |k| matches!(k, EventKind::Output { line, .. } if line.contains("accepting"))
        ) < position(&events, "db", |k| matches!(k, EventKind::Ready))
    );

    sup.stop();
    events.extend(all_events(&mut sup, Duration::from_secs(20)).await);
    let stopped = |name| {
        position(&events, name, |k| {
            matches!(k, EventKind::Stopped { report: Some(_) })
        })
    };
    assert!(stopped("web") < stopped("api"), "{events:#?}");
    assert!(stopped("api") < stopped("db"), "{events:#?}");
    assert!(alive(test).is_empty(), "left running: {:?}", alive(test));
}

#[tokio::test]
async fn a_daemonizing_child_is_stopped_with_its_service() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_daemon";
    let _reap = Reap(test);
    // The daemon starts a new session and its parent exits: only the herd still knows it.
    let script =
        "sh -c 'setsid sleep 1000 </dev/null >/dev/null 2>&1 &'; echo forked; exec sleep 1000";
    let mut sup = Supervisor::builder()
        .service(
            Service::new("d", sh(test, script))
                .ready(Ready::line("forked"), Duration::from_secs(10)),
        )
        .start()
        .unwrap();
    events_until(&mut sup, "d", |k| matches!(k, EventKind::Ready)).await;
    assert!(
        poll_until(Duration::from_secs(5), || alive(test).len() == 2),
        "{:?}",
        alive(test)
    );
    sup.stop();
    let events = all_events(&mut sup, Duration::from_secs(20)).await;
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Stopped { .. })));
    assert!(alive(test).is_empty(), "left running: {:?}", alive(test));
}

#[tokio::test]
async fn dropping_the_supervisor_kills_every_service() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_drop";
    let _reap = Reap(test);
    let mut sup = Supervisor::builder()
        .service(Service::new("a", sh(test, "sleep 1000 & exec sleep 1000")))
        .service(
            Service::new("b", cmd(test, "sleep").arg("1000").clone())
                .depends_on("a", Condition::Started),
        )
        .start()
        .unwrap();
    events_until(&mut sup, "b", |k| matches!(k, EventKind::Starting { .. })).await;
    assert!(poll_until(Duration::from_secs(5), || alive(test).len() == 3));
    drop(sup);
    assert!(
        poll_until(Duration::from_secs(5), || alive(test).is_empty()),
        "left running: {:?}",
        alive(test)
    );
}

#[tokio::test]
async fn notify_tcp_and_file_probes_make_a_service_ready() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_probes";
    let _reap = Reap(test);
    let dir = common::TempDir::new(test);
    let flag = dir.path().join("ready");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listen = format!(
        "exec python3 -c 'import socket,time; time.sleep(0.2); s=socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {})); \
         s.listen(); time.sleep(100)'",
        port.port()
    );
    let timeout = Duration::from_secs(10);
    let mut sup = Supervisor::builder()
        .service(
            Service::new(
                "notify",
                sh(test, "sleep 0.2; echo READY=1 >&$NOTIFY_FD; exec sleep 100"),
            )
            .ready(Ready::notify(3), timeout),
        )
        .service(Service::new("tcp", sh(test, &listen)).ready(Ready::tcp(port), timeout))
        .service(
            Service::new(
                "file",
                sh(
                    test,
                    &format!("sleep 0.2; touch {}; exec sleep 100", flag.display()),
                ),
            )
            .ready(Ready::file(&flag), timeout),
        )
        .service(
            Service::new("all", cmd(test, "true"))
                .depends_on("notify", Condition::Ready)
                .depends_on("tcp", Condition::Ready)
                .depends_on("file", Condition::Ready),
        )
        .start()
        .unwrap();
    let events = events_until(&mut sup, "all", |k| matches!(k, EventKind::Exited { .. })).await;
    for name in ["notify", "tcp", "file"] {
        let start = times(&events, name, |k| matches!(k, EventKind::Starting { .. }))[0];
        let ready = times(&events, name, |k| matches!(k, EventKind::Ready))[0];
        assert!(
            ready.duration_since(start) >= Duration::from_millis(200),
            "{name} ready too soon"
        );
    }
    sup.stop();
    all_events(&mut sup, Duration::from_secs(20)).await;
    assert!(alive(test).is_empty());
}

#[tokio::test]
async fn a_service_not_ready_in_time_is_stopped_and_its_dependants_give_up() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_not_ready";
    let _reap = Reap(test);
    let mut sup = Supervisor::builder()
        .service(
            Service::new("slow", cmd(test, "sleep").arg("100").clone())
                .ready(Ready::line("never"), Duration::from_millis(200)),
        )
        .service(Service::new("after", cmd(test, "true")).depends_on("slow", Condition::Ready))
        .service(Service::new("setup", cmd(test, "false")))
        .service(
            Service::new("migrated", cmd(test, "true")).depends_on("setup", Condition::Completed),
        )
        .start()
        .unwrap();
    let events = all_events(&mut sup, Duration::from_secs(20)).await;
    position(&events, "slow", |k| matches!(k, EventKind::NotReady { .. }));
    position(
        &events,
        "after",
        |k| matches!(k, EventKind::GaveUp { reason } if reason.contains("`slow`")),
    );
    position(
        &events,
        "migrated",
        |k| matches!(k, EventKind::GaveUp { reason } if reason.contains("completed")),
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Starting { .. })
            && (&*e.service == "after" || &*e.service == "migrated")));
    assert!(alive(test).is_empty());
}

#[tokio::test]
async fn stop_during_start_up_stops_what_started_and_starts_nothing_more() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_stop_startup";
    let _reap = Reap(test);
    let mut sup = Supervisor::builder()
        .service(
            Service::new("db", sh(test, "sleep 1000 & exec sleep 1000"))
                .ready(Ready::line("never"), Duration::from_secs(100)),
        )
        .service(
            Service::new("api", cmd(test, "sleep").arg("100").clone())
                .depends_on("db", Condition::Ready),
        )
        .start()
        .unwrap();
    let mut events =
        events_until(&mut sup, "db", |k| matches!(k, EventKind::Starting { .. })).await;
    sup.stop();
    events.extend(all_events(&mut sup, Duration::from_secs(20)).await);
    position(&events, "db", |k| {
        matches!(k, EventKind::Stopped { report: Some(_) })
    });
    position(&events, "api", |k| {
        matches!(k, EventKind::Stopped { report: None })
    });
    assert!(alive(test).is_empty(), "left running: {:?}", alive(test));
}

#[tokio::test]
async fn a_program_that_cannot_start_is_given_up_at_the_start_limit() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_no_program";
    let mut sup = Supervisor::builder()
        .service(
            Service::new("missing", cmd(test, "sheepdog-no-such-program"))
                .restart(Restart::on_failure())
                .backoff(Backoff::new(
                    Duration::from_millis(10),
                    2.0,
                    Duration::from_secs(1),
                ))
                .start_limit(StartLimit::new(2, Duration::from_secs(60))),
        )
        .service(Service::new("after", cmd(test, "true")).depends_on("missing", Condition::Started))
        .start()
        .unwrap();
    let events = all_events(&mut sup, Duration::from_secs(20)).await;
    let failures = times(
        &events,
        "missing",
        |k| matches!(k, EventKind::StartFailed { error } if error.contains("sheepdog-no-such-program")),
    );
    assert_eq!(failures.len(), 2, "{events:#?}");
    position(&events, "missing", |k| {
        matches!(k, EventKind::GaveUp { .. })
    });
    position(
        &events,
        "after",
        |k| matches!(k, EventKind::GaveUp { reason } if reason.contains("without having started")),
    );
}

#[tokio::test]
async fn a_service_that_stops_being_live_is_restarted_then_given_up() {
    let _shared = EXCLUSIVE.read().await;
    let test = "sup_liveness";
    let _reap = Reap(test);
    let dir = common::TempDir::new(test);
    let flag = dir.path().join("alive");
    // Alive for 0.3 s after it is ready, then it hangs without its flag.
    let script = format!(
        "touch {flag}; echo up; sleep 0.3; rm {flag}; exec sleep 100",
        flag = flag.display()
    );
    let every = Duration::from_millis(50);
    let mut sup = Supervisor::builder()
        .service(
            Service::new("hangs", sh(test, &script))
                .ready(Ready::line("up"), Duration::from_secs(10))
                .liveness(sheepdog::Liveness::file(&flag).every(every).misses(3))
                .restart(Restart::on_failure())
                .backoff(Backoff::new(
                    Duration::from_millis(10),
                    2.0,
                    Duration::from_secs(1),
                ))
                .start_limit(StartLimit::new(2, Duration::from_secs(60))),
        )
        .start()
        .unwrap();
    let events = all_events(&mut sup, Duration::from_secs(20)).await;
    let ready = times(&events, "hangs", |k| matches!(k, EventKind::Ready));
    let dead = times(&events, "hangs", |k| {
        matches!(k, EventKind::NotLive { misses: 3 })
    });
    assert_eq!((ready.len(), dead.len()), (2, 2), "{events:#?}");
    for (ready, dead) in ready.iter().zip(&dead) {
        let lived = dead.duration_since(*ready);
        assert!(
            lived >= Duration::from_millis(300) + every * 2,
            "not live after {lived:?}"
        );
        assert!(
            lived < Duration::from_secs(3),
            "noticed only after {lived:?}"
        );
    }
    position(&events, "hangs", |k| matches!(k, EventKind::GaveUp { .. }));
    assert!(alive(test).is_empty(), "left running: {:?}", alive(test));
}

/// Children of this process that are zombies now.
fn zombie_children() -> Vec<u32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        zombies.extend(
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .filter(|&pid| common::pid_state(pid) == Some('Z')),
        );
    }
    zombies
}

/// Herd cgroups below this process's own cgroup.
fn herd_cgroups() -> Option<usize> {
    let own = common::cgroup::own_cgroup()?;
    Some(
        std::fs::read_dir(own)
            .ok()?
            .flatten()
            .filter(|e| e.path().is_dir())
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_restarts_leave_no_process_fd_zombie_or_cgroup() {
    let _exclusive = EXCLUSIVE.write().await;
    let test = "sup_restarts";
    let _reap = Reap(test);
    // Each incarnation leaves a background child behind when its leader fails.
    let flaky = |restarts: u32| {
        Supervisor::builder()
            .service(
                Service::new("flaky", sh(test, "sleep 1000 & exit 1"))
                    .restart(Restart::Always)
                    .backoff(Backoff::new(Duration::ZERO, 1.0, Duration::ZERO))
                    .start_limit(StartLimit::new(restarts + 1, Duration::from_secs(3600)))
                    .stop(sheepdog::StopPlan::grace(Duration::from_secs(5))),
            )
            .start()
            .unwrap()
    };
    // A first round opens what sheepdog keeps for good (the sentinel, cgroups made ahead).
    all_events(&mut flaky(3), Duration::from_secs(20)).await;
    common::settle();
    let fds = common::open_fds();
    let cgroups = herd_cgroups();

    let restarts = 1000;
    let mut sup = flaky(restarts);
    let started = Instant::now();
    // Meanwhile, a thread samples how many of the test's processes live at once.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(alive(test).len());
            }
            most
        }
    });
    let events = all_events(&mut sup, Duration::from_secs(60)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most_alive = sampler.join().expect("the sampler");
    assert!(
        most_alive <= 2,
        "{most_alive} processes of the service at once"
    );
    let elapsed = started.elapsed();
    let starts = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Starting { .. }))
        .count();
    assert_eq!(starts, restarts as usize + 1);
    // No incarnation overlapped the next: each one's tree was gone before the next started.
    let mut running = 0;
    for event in &events {
        match event.kind {
            EventKind::Starting { .. } => running += 1,
            EventKind::Exited { .. } => running -= 1,
            _ => {}
        }
        assert!(running <= 1, "two incarnations at once");
    }
    drop(sup);
    assert!(alive(test).is_empty(), "left running: {:?}", alive(test));
    assert!(
        zombie_children().is_empty(),
        "zombies: {:?}",
        zombie_children()
    );
    common::settle();
    let now = common::open_fds();
    assert_eq!(
        now.len(),
        fds.len(),
        "descriptors: {fds:?} before, now {:#?}",
        common::describe_fds()
    );
    if let Some(before) = cgroups {
        assert!(
            poll_until(Duration::from_secs(5), || herd_cgroups() <= Some(before)),
            "cgroups: {:?} before, {:?} after",
            before,
            herd_cgroups()
        );
    }
    // Restart latency with no backoff: the old tree gone (`Exited`) to the next one running.
    let mut latencies: Vec<Duration> = events
        .windows(4)
        .filter_map(|w| match (&w[0].kind, &w[2].kind) {
            (EventKind::Exited { .. }, EventKind::Starting { .. }) => {
                Some(w[2].at.duration_since(w[0].at))
            }
            _ => None,
        })
        .collect();
    latencies.sort();
    eprintln!(
        "{} incarnations in {elapsed:?}; restart latency median {:?}, max {:?}",
        restarts + 1,
        latencies.get(latencies.len() / 2),
        latencies.last()
    );
}
