//! The built binary driven as a user would: `credentials`, then `run` with the aws CLI.
//! The aws CLI comes from PyPI via tests/run.sh, which sets HAVEN_RELAY_AWS_CLI.

mod binary;

use std::process::{Command, Stdio};

use binary::{BIN, aws_at, aws_cli, http_relay};

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
    // A circle made without the app, as a restic-only user would.
    let circle = stdout_of(&["circle", "new", "--member", &member]).trim().to_owned();
    let parsed: tunnel::link::CircleLink = circle.parse().unwrap();
    assert_eq!(parsed.members, [member.parse().unwrap()]);
    let other = stdout_of(&["circle", "new"])
        .trim()
        .parse::<tunnel::link::CircleLink>()
        .unwrap();
    assert!(other.members.is_empty());
    assert_ne!(other.circle, parsed.circle, "each circle gets its own random id");

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

/// `doctor` says what `run` with the same flags, variables and relay.json would let clients
/// take, each from the place that set it.
#[test]
fn doctor_shows_the_limits_run_would_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.json");
    std::fs::write(
        &config,
        r#"{ "ttl": "2w", "max_storage": "1G", "limits": { "max_streams_per_connection": 64 } }"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "doctor",
            "--max-connections-per-member",
            "3",
            "--requests-per-second",
            "50",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env("HAVEN_RELAY_MAX_CONNECTIONS", "300")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = |label: &str| -> String {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("embedded store").contains("writable"));
    assert!(line("HTTP connections:").contains(" 300 at once"), "{stdout}");
    assert!(line("requests per second:").contains("50 per client"), "{stdout}");
    assert!(line("storage quota:").contains(&(1u64 << 30).to_string()), "{stdout}");
    assert!(line("object lifetime:").contains("14d"), "{stdout}");
    assert!(
        line("tunnel:").contains("3 connections per member, 64 requests in flight"),
        "{stdout}"
    );
}
