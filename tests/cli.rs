//! The built binary driven as a user would: `credentials`, then `run` with the aws CLI.
//! The aws CLI comes from PyPI via tests/run.sh, which sets HAVEN_RELAY_AWS_CLI.

mod binary;

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_haven-relay");

fn aws_cli() -> String {
    std::env::var("HAVEN_RELAY_AWS_CLI")
        .expect("HAVEN_RELAY_AWS_CLI is not set: run the tests with `bash tests/run.sh`, which installs the aws CLI")
}

const ACCESS_KEY: &str = "CLITESTKEY";
const SECRET_KEY: &str = "cli-test-secret";

/// `haven-relay run` with HTTP S3 on a free port and the test keys, and its endpoint. With
/// `log`, stderr is kept for the test to read (after the relay exits); otherwise discarded.
fn http_relay(dir: &std::path::Path, log: bool) -> (binary::Running, String) {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--s3-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .env_remove("RUST_LOG")
        .stderr(if log { Stdio::piped() } else { Stdio::null() });
    binary::spawn_until(command, "S3 endpoint:")
}

/// The aws CLI against `endpoint` with the test keys and no user configuration.
fn aws_at(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(aws_cli())
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

#[test]
fn credentials_are_created_once_with_private_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(BIN)
            .args(["credentials", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("access key: HAVN"), "{first}");
    assert_eq!(run(), first, "credentials are stable");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// `credentials` prints the keys `run` uses with the same environment and relay.json, and
/// creates no stored pair when the keys come from elsewhere.
#[test]
fn credentials_print_what_run_uses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("HAVEN_RELAY_ACCESS_KEY", "ENVACCESSKEY00000000"),
        ("HAVEN_RELAY_SECRET_KEY", "env-secret-0123456789abcdefghijklmnopqrst"),
    ];
    let out = Command::new(BIN)
        .args(["credentials", "--data-dir"])
        .arg(&data)
        .envs(env)
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("access key: ENVACCESSKEY00000000"), "{printed}");
    assert!(printed.contains("secret key: env-secret-"), "{printed}");
    assert!(!data.join("credentials.json").exists(), "no unused pair was created");

    // relay.json's data_dir is where `run` keeps its keys, so `credentials --config` reads there.
    let elsewhere = dir.path().join("elsewhere");
    let config = dir.path().join("relay.json");
    std::fs::write(&config, format!("{{\"data_dir\": {:?}}}", elsewhere.to_str().unwrap())).unwrap();
    let stored = stdout_of(&["credentials", "--config", config.to_str().unwrap()]);
    let (mut relay, endpoint) = spawn_until(
        &["run", "--config", config.to_str().unwrap(), "--s3-addr", "127.0.0.1:0"],
        "S3 endpoint:",
    );
    let key = |label: &str| {
        stored
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap()
            .trim()
            .to_owned()
    };
    let out = Command::new(aws_cli())
        .args(["--endpoint-url", &endpoint, "--region", "us-east-1", "s3", "ls"])
        .env("AWS_ACCESS_KEY_ID", key("access key:"))
        .env("AWS_SECRET_ACCESS_KEY", key("secret key:"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert!(
        out.status.success(),
        "the printed keys open the running relay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_without_a_transport_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    // An empty HAVEN_RELAY_LINK (a container's unset variable) is no link, not a bad one.
    let out = Command::new(BIN)
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .env("HAVEN_RELAY_LINK", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--s3") && !said.contains("link:"), "{said}");
    // A set one is the circle link, as --link would be.
    let out = Command::new(BIN)
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .env("HAVEN_RELAY_LINK", "haven-relay://circle#garbage")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--link"));
}

#[test]
fn aws_cli_round_trip_against_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, endpoint) = http_relay(dir.path(), false);
    let aws = |args: &[&str]| {
        let out = aws_at(&endpoint, args);
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let src = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    aws(&["s3", "mb", "s3://cli-bucket"]);
    // 20 MB: the CLI uploads it as a multipart upload with CRC32 checksums.
    aws(&[
        "s3",
        "cp",
        src.to_str().unwrap(),
        "s3://cli-bucket/dir/file with space.bin",
    ]);
    let listing = aws(&["s3", "ls", "--recursive", "s3://cli-bucket"]);
    assert!(listing.contains("20000000 dir/file with space.bin"), "{listing}");
    let back = dir.path().join("download.bin");
    aws(&[
        "s3",
        "cp",
        "s3://cli-bucket/dir/file with space.bin",
        back.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&back).unwrap() == data, "downloaded bytes differ");
    aws(&["s3", "rm", "s3://cli-bucket/dir/file with space.bin"]);
    assert!(!aws(&["s3", "ls", "--recursive", "s3://cli-bucket"]).contains("file with space"));

    // Errors carry AWS's message, so the CLI prints more than "Unknown".
    let failed = |args: &[&str]| {
        let out = aws_at(&endpoint, args);
        assert!(!out.status.success(), "aws {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing_bucket = failed(&["s3api", "list-objects-v2", "--bucket", "no-such-bucket"]);
    assert!(
        missing_bucket.contains("(NoSuchBucket)") && missing_bucket.contains("The specified bucket does not exist"),
        "{missing_bucket}"
    );
    let missing_key = failed(&[
        "s3api",
        "get-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "nope",
        "/dev/null",
    ]);
    assert!(
        missing_key.contains("(NoSuchKey)") && missing_key.contains("The specified key does not exist"),
        "{missing_key}"
    );

    // SIGTERM: the relay stops cleanly.
    let pid = relay.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = relay.wait().unwrap();
    assert!(status.success(), "relay exited with {status}");
}

/// Starts `haven-relay ARGS` and returns it with the value after `label` on its stdout.
fn spawn_until(args: &[&str], label: &str) -> (binary::Running, String) {
    binary::spawn_until(binary::haven(args), label)
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn circle_link_tunnel_and_connect_with_the_aws_cli() {
    let relay_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let (relay_dir_s, client_dir_s) = (relay_dir.path().to_str().unwrap(), client_dir.path().to_str().unwrap());
    let member = stdout_of(&["id", "--data-dir", client_dir_s]).trim().to_owned();
    assert_eq!(
        stdout_of(&["id", "--data-dir", client_dir_s]).trim(),
        member,
        "stable id"
    );
    let circle = tunnel::link::CircleLink {
        circle: tunnel::link::CircleId([5; 16]),
        members: vec![member.parse().unwrap()],
    }
    .to_string();

    let tunnel_flags = ["--iroh-relay", "disabled", "--iroh-addr", "127.0.0.1:0"];
    let run = |link: Option<&str>| {
        let mut args = vec!["run", "--data-dir", relay_dir_s];
        args.extend(tunnel_flags);
        if let Some(link) = link {
            args.extend(["--link", link]);
        }
        spawn_until(&args, "relay link:")
    };
    let (mut relay, relay_link) = run(Some(&circle));
    assert!(relay_link.starts_with("haven-relay://relay#"), "{relay_link}");
    assert!(stdout_of(&["link", "--data-dir", relay_dir_s]).contains(&relay_link));
    // `haven-relay link | head -1`: a reader that goes away is no reason to panic.
    let mut closed = Command::new(BIN)
        .args(["link", "--data-dir", relay_dir_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let out = closed.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "link into a closed pipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout_of(&["members", "list", "--data-dir", relay_dir_s]).trim(),
        member
    );

    let mut connect_args = vec![
        "connect",
        &relay_link,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        client_dir_s,
    ];
    connect_args.extend(tunnel_flags);
    let (mut connect, endpoint) = spawn_until(&connect_args, "S3 endpoint:");
    let aws = |args: &[&str]| {
        Command::new(aws_cli())
            .args(["--endpoint-url", &endpoint, "--region", "us-east-1"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "anything")
            .env("AWS_SECRET_ACCESS_KEY", "members-need-no-secret")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap()
    };
    let sealed = client_dir.path().join("sealed.bin");
    std::fs::write(&sealed, vec![42u8; 300_000]).unwrap();
    assert!(aws(&["s3", "mb", "s3://tunnelled"]).status.success());
    let out = aws(&["s3", "cp", sealed.to_str().unwrap(), "s3://tunnelled/sealed.bin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = aws(&["s3", "cp", "s3://tunnelled/sealed.bin", "-"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, vec![42u8; 300_000]);

    // A restart (SIGTERM, as systemd sends) and a later `run` with no link: the same circle,
    // identity and address, and `connect` redials without being told.
    let term = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(relay.wait().unwrap().success(), "clean exit on SIGTERM");
    let (mut relay, resumed) = run(None);
    assert_eq!(resumed, relay_link);
    let out = aws(&["s3", "ls", "s3://tunnelled"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sealed.bin"),
        "connect reconnected"
    );

    stdout_of(&["members", "remove", &member, "--data-dir", relay_dir_s]);
    let refused = (0..40).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !aws(&["s3", "ls", "s3://tunnelled"]).status.success()
    });
    assert!(refused, "a removed member is cut off");
    // A `connect` by a node outside the circle says so at once, with the command that admits it.
    let mut outsider_args = connect_args.clone();
    let at = outsider_args.iter().position(|a| *a == "--listen").unwrap();
    outsider_args[at + 1] = "127.0.0.1:0";
    let out = Command::new(BIN).args(&outsider_args).output().unwrap();
    assert!(!out.status.success(), "a non-member's connect must fail");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not a member") && said.contains(&format!("haven-relay members add {member}")),
        "{said}"
    );
    for child in [&mut relay, &mut connect] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn malformed_links_get_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    for link in [
        "haven-relay://circle#",
        "haven-relay://circle#AgAA",
        "https://example.org",
        "haven-relay://circle#!!",
    ] {
        let out = Command::new(BIN)
            .args(["run", "--iroh-relay", "disabled", "--link", link, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{link}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--link"), "{link}: {err}");
        assert!(!err.contains("panicked"), "{link}: {err}");
    }
}

#[test]
fn doctor_reports_every_backend_and_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, format!("[friends]\ntype = alias\nremote = {}\n", disk.display())).unwrap();
    // A port nothing listens on: an S3 backend that is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--backend-timeout", "2", "--data-dir"])
        .arg(dir.path())
        .arg("--backend")
        .arg(format!("fs:{}", dir.path().join("mirror").display()))
        .args(["--rclone-remote", "friends:haven", "--rclone-config"])
        .arg(&conf)
        .arg("--rclone-bin")
        .arg(std::env::var("HAVEN_RELAY_RCLONE").expect("run the tests with `bash tests/run.sh`"))
        .arg("--backend")
        .arg(format!("s3://bucket?endpoint=http://{dead}"))
        .env("AWS_ACCESS_KEY_ID", "DOCTORKEYID")
        .env("AWS_SECRET_ACCESS_KEY", "doctor-super-secret-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dead backend fails the doctor: {stdout}");
    let sections: Vec<&str> = stdout.split("\n").collect();
    let section = |label: &str| -> String {
        let start = sections
            .iter()
            .position(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {stdout}"));
        sections[start..(start + 4).min(sections.len())].join("\n")
    };
    assert!(section("fs:").contains("reachable:        yes"), "{stdout}");
    assert!(
        section("rclone:friends:haven").contains("reachable:        yes"),
        "{stdout}"
    );
    assert!(
        section("s3://bucket@").contains("reachable:        NO: connection refused"),
        "{stdout}"
    );
    assert!(section("fs:").contains("pending repairs:  0"), "{stdout}");
    assert!(stdout.contains("rclone: rclone v"), "{stdout}");
    assert!(disk.join("haven").is_dir(), "the rclone folder was created");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("doctor-super-secret-value"),
            "a secret was printed: {text}"
        );
    }
}

#[test]
fn a_bad_backend_uri_gets_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    for (uri, why) in [
        ("s3://b?secret_access_key=x", "keys do not belong"),
        ("ftp://x", "expected fs:PATH"),
        ("rclone:nofolder", "REMOTE:PATH"),
    ] {
        let out = Command::new(BIN)
            .args(["run", "--s3", "--backend", uri, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{uri}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{uri}: {err}");
        assert!(!err.contains("panicked"), "{uri}: {err}");
    }
}

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

/// With no iroh relay and no `--iroh-addr`, the ports are still kept across restarts, so the
/// relay link (which then carries the direct addresses) a user saved keeps working.
#[test]
fn the_relay_link_survives_a_restart_without_a_pinned_address() {
    let dir = tempfile::tempdir().unwrap();
    let member = binary::node_id(tempfile::tempdir().unwrap().path());
    let circle = binary::circle_link(11, &[&member]);
    let run = |link: Option<&str>| {
        let mut command = binary::haven(&["run", "--iroh-relay", "disabled", "--data-dir"]);
        command.arg(dir.path());
        if let Some(link) = link {
            command.args(["--link", link]);
        }
        binary::spawn_until(command, "relay link:")
    };
    let (mut first, before) = run(Some(&circle));
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, after) = run(None);
    assert_eq!(after, before, "the same link after a restart");
    second.kill().unwrap();
    second.wait().unwrap();
}

/// A backend that accepts connections and never answers is reported within the backend
/// timeout, not after minutes of retries.
#[test]
fn doctor_gives_up_on_a_backend_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["doctor", "--backend-timeout", "2", "--data-dir"])
        .arg(dir.path())
        .arg("--backend")
        .arg(format!("s3://bucket?endpoint=http://{addr}"))
        .env("AWS_ACCESS_KEY_ID", "DOCTORKEYID")
        .env("AWS_SECRET_ACCESS_KEY", "doctor-secret")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    // One attempt may take the 2 s timeout, and there are 3 retries.
    assert!(stdout.contains("reachable:        NO: no answer in 8 s"), "{stdout}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
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

/// A `run --link` that fails to start (here: its S3 port is taken) has not joined the circle.
#[test]
fn a_run_that_fails_to_start_joins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let member = binary::node_id(tempfile::tempdir().unwrap().path());
    let circle = binary::circle_link(12, &[&member]);
    let out = Command::new(BIN)
        .args(["run", "--s3-addr", &port, "--link", &circle, "--data-dir"])
        .arg(dir.path())
        .args(binary::TUNNEL)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the S3 port was taken");
    assert!(!dir.path().join("circle-link").exists(), "the circle was remembered");
    assert!(!dir.path().join("members.json").exists(), "members were admitted");
    let listed = Command::new(BIN)
        .args(["members", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(listed.stdout.is_empty());
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
        text.contains("no quota  (default)") && text.contains("512  (default)"),
        "{text}"
    );
}
