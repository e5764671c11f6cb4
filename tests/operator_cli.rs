//! Running the binary as an operator does: `config show` and `config init`, `health`,
//! signals, logs, the data dir's privacy and lock, settings that cannot work. The aws CLI
//! comes from PyPI via tests/run.sh, which sets HAVEN_RELAY_AWS_CLI.

mod binary;

use std::process::{Command, Stdio};

use binary::{ACCESS_KEY, BIN, SECRET_KEY, aws_at, http_relay};

/// `config show` for `run`'s flags: one precedence for every key (flag > environment >
/// relay.json > default), each value with its source, secrets never printed.
#[test]
fn config_show_says_what_wins_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.json");
    let from_file = dir.path().join("from-file");
    std::fs::write(
        &file,
        format!(
            "{{\n  // comments and trailing commas are fine\n  \"data_dir\": {:?},\n  \"no_storage\": true,\n  \
             \"s3_addr\": \"127.0.0.1:7001\",\n  \"mailbox\": {{\"max_message_bytes\": 2048,}},\n  \"ack\": \"quorum:2\",\n  \"scrub_interval_hours\": 12,\n  \"limits\": {{\"max_connections\": 64}},\n}}\n",
            from_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let show = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["config", "show", "--config", file.to_str().unwrap()])
            .args(args)
            .env_remove("HAVEN_RELAY_DATA_DIR")
            .envs(env.iter().copied())
            .env("HAVEN_RELAY_ACCESS_KEY", "SHOWKEY")
            .env("HAVEN_RELAY_SECRET_KEY", "a-very-secret-secret-key")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("a-very-secret-secret-key"), "a secret printed:\n{text}");
        text
    };
    let line = |text: &str, key: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // The file alone.
    let text = show(&[], &[]);
    assert_eq!(line(&text, "data_dir"), format!("{} (relay.json)", from_file.display()));
    assert_eq!(line(&text, "no_storage"), "true (relay.json)");
    assert_eq!(line(&text, "s3_addr"), "127.0.0.1:7001 (relay.json)");
    assert_eq!(line(&text, "mailbox.max_message_bytes"), "2048 (relay.json)");
    assert_eq!(line(&text, "mailbox.max_queued_messages"), "1000 (default)");
    assert_eq!(line(&text, "ack"), "quorum:2 (relay.json)");
    assert_eq!(line(&text, "scrub_interval_hours"), "12 (relay.json)");
    assert_eq!(line(&text, "mailbox.max_hops"), "2 (default)");
    assert_eq!(line(&text, "limits.max_connections"), "64 (relay.json)");
    assert_eq!(line(&text, "limits.header_timeout_secs"), "20 (default)");
    assert_eq!(line(&text, "limits.requests_per_second"), "no limit (default)");
    assert!(line(&text, "secret_key").ends_with("(environment)"));
    // The environment beats the file; a flag beats both.
    let flag_dir = dir.path().join("from-flag");
    let env_dir = dir.path().join("from-env");
    let text = show(
        &[],
        &[
            ("HAVEN_RELAY_DATA_DIR", env_dir.to_str().unwrap()),
            ("HAVEN_RELAY_S3_ADDR", "127.0.0.1:7002"),
            ("HAVEN_RELAY_MAILBOX_MAX_MESSAGE", "4096"),
            ("HAVEN_RELAY_NO_STORAGE", "false"),
            ("HAVEN_RELAY_MAX_CONNECTIONS", "65"),
        ],
    );
    assert_eq!(line(&text, "limits.max_connections"), "65 (environment)");
    assert_eq!(line(&text, "data_dir"), format!("{} (environment)", env_dir.display()));
    assert_eq!(line(&text, "s3_addr"), "127.0.0.1:7002 (environment)");
    assert_eq!(line(&text, "mailbox.max_message_bytes"), "4096 (environment)");
    assert_eq!(line(&text, "no_storage"), "false (environment)");
    let text = show(
        &[
            "--data-dir",
            flag_dir.to_str().unwrap(),
            "--s3-addr",
            "127.0.0.1:7003",
            "--mailbox-max-message",
            "8192",
            "--no-storage=false",
            "--switch-pipes-per-member",
            "3",
            "--max-connections",
            "66",
            "--requests-per-second",
            "50",
        ],
        &[
            ("HAVEN_RELAY_DATA_DIR", env_dir.to_str().unwrap()),
            ("HAVEN_RELAY_S3_ADDR", "127.0.0.1:7002"),
            ("HAVEN_RELAY_MAILBOX_MAX_MESSAGE", "4096"),
        ],
    );
    assert_eq!(line(&text, "data_dir"), format!("{} (flag)", flag_dir.display()));
    assert_eq!(line(&text, "s3_addr"), "127.0.0.1:7003 (flag)");
    assert_eq!(line(&text, "mailbox.max_message_bytes"), "8192 (flag)");
    assert_eq!(line(&text, "no_storage"), "false (flag)");
    assert_eq!(line(&text, "switchboard.pipes_per_member"), "3 (flag)");
    assert_eq!(line(&text, "limits.max_connections"), "66 (flag)");
    assert_eq!(line(&text, "limits.requests_per_second"), "50 (flag)");
    let text = show(&["--max-storage", "500M"], &[]);
    assert_eq!(line(&text, "max_storage"), "524288000 (flag)");
    let text = show(&["--backend-timeout", "9"], &[]);
    assert_eq!(line(&text, "backend_timeout_secs"), "9 (flag)");
    // A flag beats a variable even when they are two different flags for one setting.
    let text = show(&["--s3-port", "7004"], &[("HAVEN_RELAY_S3_ADDR", "127.0.0.1:7002")]);
    assert_eq!(line(&text, "s3_addr"), "127.0.0.1:7004 (flag)");
    // `--s3` alone with an address in relay.json: the file's address.
    let text = show(&["--s3"], &[]);
    assert_eq!(line(&text, "s3_addr"), "127.0.0.1:7001 (relay.json)");
    // Errors name the key.
    std::fs::write(&file, "{\"mailbox\": {\"max_mesage_bytes\": 1}}").unwrap();
    let out = Command::new(BIN)
        .args(["config", "show", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_mesage_bytes"));
}

/// `config init` writes a relay.json that `run` accepts as it is, and does not overwrite one.
#[test]
fn config_init_writes_a_file_run_accepts_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.json");
    let init = |extra: &[&str]| {
        Command::new(BIN)
            .args(["config", "init", file.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(init(&[]).status.success());
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("// \"s3_addr\""), "{written}");
    let again = init(&[]);
    assert!(!again.status.success(), "an existing file is not replaced");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    let shown = Command::new(BIN)
        .args(["config", "show", "--config", file.to_str().unwrap()])
        .env("HAVEN_RELAY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
}

/// `health` answers from the running relay's heartbeat: no relay, running, stopped.
#[test]
fn health_tells_running_from_stopped_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let health = || {
        Command::new(BIN)
            .args(["health", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let never = health();
    assert_eq!(never.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&never.stderr).contains("no relay has run"));
    let (mut relay, _) = binary::spawn_until(
        binary::haven(&[
            "run",
            "--s3-addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]),
        "S3 endpoint:",
    );
    let running = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        health().status.success()
    });
    assert!(running, "a running relay is healthy");
    let term = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(relay.wait().unwrap().success());
    let stopped = health();
    assert_eq!(stopped.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("stopped"));
}

/// At the default level every request gets one line, with what was done and how it went but
/// no bucket, key or address; and no colour codes when stderr is not a terminal.
#[test]
fn each_request_is_logged_once_without_names_or_colour() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, endpoint) = http_relay(dir.path(), true);
    let body = dir.path().join("body.bin");
    std::fs::write(&body, b"sealed").unwrap();
    for args in [
        vec!["s3", "mb", "s3://telltale-bucket"],
        vec!["s3", "cp", body.to_str().unwrap(), "s3://telltale-bucket/telltale-key"],
    ] {
        let out = aws_at(&endpoint, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pid = relay.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = relay.into_inner().wait_with_output().unwrap();
    let log = String::from_utf8(out.stderr).unwrap();
    assert!(log.contains("op=PUT bucket status=200"), "{log}");
    assert!(log.contains("op=PUT object status=200 bytes_in=6"), "{log}");
    assert!(
        !log.contains("telltale") && !log.contains("127.0.0.1"),
        "names in the log:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal");
}

/// A request whose headers never finish: it keeps a connection of the relay busy, as a slow
/// client would, so a graceful stop has something to wait for.
fn stuck_request(endpoint: &str) -> std::net::TcpStream {
    use std::io::Write;
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stuck = std::net::TcpStream::connect(addr).unwrap();
    write!(stuck, "PUT /b/k HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stuck
}

/// The first Ctrl-C (or SIGTERM) lets requests in flight finish and says a second one stops
/// at once; the second one does.
#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, endpoint) = http_relay(dir.path(), true);
    let upload = stuck_request(&endpoint);
    let pid = relay.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        relay.try_wait().unwrap().is_none(),
        "the first signal waits for the upload"
    );
    let second = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = relay.wait().unwrap();
    assert!(
        second.elapsed() < std::time::Duration::from_secs(5),
        "the second signal took {:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut relay.stderr.take().unwrap(), &mut said).unwrap();
    assert!(said.contains("again to stop at once"), "{said}");
    drop(upload);
}

/// Requests cut off by the grace period make a non-zero exit, so a supervisor (or a person)
/// knows the stop was not clean.
#[test]
fn a_stop_that_cuts_requests_off_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, endpoint) = http_relay(dir.path(), true);
    let stuck = stuck_request(&endpoint);
    let pid = relay.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = relay.wait().unwrap();
    assert_eq!(status.code(), Some(1), "cut off after the grace period");
    let mut said = String::new();
    std::io::Read::read_to_string(&mut relay.stderr.take().unwrap(), &mut said).unwrap();
    assert!(said.contains("were cut off"), "{said}");
    drop(stuck);
}

/// Other local users read nothing in the data dir: an old one (0755, files 0644) is closed at
/// start, and everything the relay writes is the relay user's alone, whatever the umask.
#[test]
fn the_data_dir_is_private_to_the_relay_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("old")).unwrap();
    std::fs::write(data.join("old/file"), b"from an older version").unwrap();
    for (path, mode) in [("", 0o755), ("old", 0o755), ("old/file", 0o644)] {
        std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (_relay, endpoint) = http_relay(&data, false);
    assert!(aws_at(&endpoint, &["s3", "mb", "s3://private"]).status.success());
    let file = dir.path().join("sealed");
    std::fs::write(&file, b"sealed").unwrap();
    assert!(
        aws_at(&endpoint, &["s3", "cp", file.to_str().unwrap(), "s3://private/k"])
            .status
            .success()
    );
    let started = std::time::Instant::now();
    while !data.join(".private").exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the walk never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut pending = vec![data.clone()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{} is open to others",
            path.display()
        );
        seen += 1;
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 10, "only {seen} entries");
}

/// One relay per data dir, also without storage (which opens no store and so took no lock):
/// a second start says another relay runs there, and starts fine once the first has stopped.
#[test]
fn a_second_relay_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = Command::new(BIN);
        command
            .args(["run", "--no-storage", "--s3-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stderr(Stdio::piped());
        command
    };
    let (first, _) = binary::spawn_until(start(), "S3 endpoint:");
    let out = start().output().unwrap();
    assert!(!out.status.success(), "a second relay started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running with the data dir"), "{err}");
    drop(first);
    let (_again, endpoint) = binary::spawn_until(start(), "S3 endpoint:");
    assert!(endpoint.starts_with("http://"));
}

/// Settings that cannot work together are refused at start, naming the keys.
#[test]
fn contradictory_mailbox_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (args, why) in [
        (
            &["--mailbox-lifetime-days", "200"][..],
            "mailbox.default_lifetime_days (200) is longer than mailbox.max_lifetime_days (120)",
        ),
        (
            &["--mailbox-posts-per-minute", "0"][..],
            "mailbox.posts_per_minute must be at least 1",
        ),
        (&["--max-object-size", "0"][..], "max_object_size must be at least 1"),
    ] {
        let out = Command::new(BIN)
            .args(["config", "show", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// `--log-format json`: every log line is one JSON object a collector can read, with the
/// request line's fields as fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut command = Command::new(BIN);
    command
        .args(["--log-format", "json", "run", "--s3-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap());
    let (relay, endpoint) = binary::spawn_until(command, "S3 endpoint:");
    assert!(aws_at(&endpoint, &["s3", "mb", "s3://jsonlogs"]).status.success());
    drop(relay);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["op"] == "PUT bucket")
        .unwrap_or_else(|| panic!("no request line in\n{text}"));
    assert_eq!(request["level"], "INFO");
    assert_eq!(request["status"], 200);
    assert!(!text.contains("jsonlogs"), "a bucket name at info:\n{text}");
}

/// An empty `HAVEN_RELAY_*` variable is the same as none (compose passes `${VAR}` unset).
#[test]
fn empty_environment_variables_mean_unset() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.args(["config", "show", "--data-dir"]).arg(dir.path());
    for name in [
        "HAVEN_RELAY_MAX_STORAGE",
        "HAVEN_RELAY_MAX_CONNECTIONS",
        "HAVEN_RELAY_REQUESTS_PER_SECOND",
        "HAVEN_RELAY_OPS_ADDR",
        "HAVEN_RELAY_TLS_CERT",
        "HAVEN_RELAY_S3_ADDR",
        "HAVEN_RELAY_MAILBOX_MAX_MESSAGE",
    ] {
        command.env(name, "");
    }
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("no quota  (default)") && text.contains("4096  (default)"),
        "{text}"
    );
}
